"""Stand-in steps for the executors, Ray and benchmark code: each behaves in one known way, with no model.

- :class:`FailingRows`: its model call fails whenever the batch holds one of ``failing``: the step's guarded
  batching must record that row's error and keep the others.
- :class:`DiesOnce`: its first call kills its own process (a crashed Ray actor), later calls succeed.
- :class:`Busy`: the same single-threaded CPU work per clip wherever it runs.

Example:
    >>> FailingRows(failing=(1,))({"id": ["a", "b", "c"]})["dummy_value"]
    [0, None, 20]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_datasets.media import MediaBatch
from fusion_datasets.steps import ModelConfig, ModelStep


@dataclass(frozen=True)
class FailingRowsConfig(ModelConfig):
    model: str = "none"
    failing: tuple[int, ...] = ()  # rows (of a batch) whose model call raises


class FailingRows(ModelStep[FailingRowsConfig]):
    """Writes ``dummy_value`` (10 x the row) through guarded batching; a call holding a ``failing`` row raises."""

    stage = "failing_rows"
    config_class = FailingRowsConfig

    def reads(self) -> tuple[str, ...]:
        return ("id",)

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"dummy_value": Value("int64")}

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        def infer(rows: list[int]) -> list[int]:
            failing = sorted(set(rows) & set(self.config.failing))
            if failing:
                raise RuntimeError(f"cannot handle row {failing[0]}")
            return [row * 10 for row in rows]

        outputs = self.empty_outputs(media.size)
        for row, value in self.run_guarded(media, list(range(media.size)), infer).items():
            outputs["dummy_value"][row] = value
        return outputs


@dataclass(frozen=True)
class DiesOnceConfig(ModelConfig):
    model: str = "none"
    marker: str = ""  # created by the first call, which then kills its own process


class DiesOnce(ModelStep[DiesOnceConfig]):
    """Writes ``survived``; its first call (no ``marker`` file yet) kills the process it runs in."""

    stage = "dies_once"
    config_class = DiesOnceConfig

    def reads(self) -> tuple[str, ...]:
        return ("id",)

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"survived": Value("bool")}

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        marker = Path(self.config.marker)
        if not marker.exists():
            marker.touch()
            os._exit(1)
        return {"survived": [True] * media.size}


@dataclass(frozen=True)
class BusyConfig(ModelConfig):
    model: str = "none"
    iterations: int = 100_000  # of a single-threaded Python loop per clip


def spin(iterations: int) -> int:
    """``iterations`` of a single-threaded Python loop."""
    total = 0
    for value in range(iterations):
        total += value & 7
    return total


class Busy(ModelStep[BusyConfig]):
    """A CPU-bound stand-in for the sound expert: ``sound_caption`` after the same work per clip."""

    stage = "sound"
    config_class = BusyConfig

    def reads(self) -> tuple[str, ...]:
        return ("id",)

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"sound_caption": Value("string")}

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        for _ in range(media.size):
            spin(self.config.iterations)
        return {"sound_caption": [f"A dog barks, clip {clip}." for clip in media.column("id")]}
