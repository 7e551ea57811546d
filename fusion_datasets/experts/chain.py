"""Several experts over one batch, sharing its decoded audio and separated tracks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from fusion_datasets import __version__
from fusion_datasets.experts.base import ERRORS, Expert, merge_features
from fusion_datasets.media import MediaBatch

STAGE_SECONDS = "stage_seconds"  # each row's share of its batch's time per stage (for the runner's stats)


def stage_seconds_feature() -> Any:
    from datasets import List, Value

    return List({"stage": Value("string"), "seconds": Value("float64")})


class ExpertChain:
    """Run ``experts`` in order on each batch; one decode and one resample per rate serve them all.

    With ``record_timings`` it also writes ``stage_seconds``: the batch's time in each stage, split
    evenly over its rows, so time per stage adds up across shards and worker processes.

    Example:
        >>> chain = ExpertChain([ASTAudioTagger(model=tags), WhisperTranscriber(model=asr)])  # doctest: +SKIP
        >>> ds = ds.map(chain, batched=True, with_rank=True)  # doctest: +SKIP
    """

    def __init__(self, experts: Sequence[Expert], record_timings: bool = False) -> None:
        self.experts = list(experts)
        self.record_timings = record_timings

    def features(self) -> dict[str, Any]:
        """The ``datasets`` feature of every column the chain writes (``errors`` aside)."""
        features = {name: feature for expert in self.experts for name, feature in expert.features().items()}
        return {**features, STAGE_SECONDS: stage_seconds_feature()} if self.record_timings else features

    def output_features(self, input_features: Any) -> Any:
        """The features of ``ds.map(self, ...)`` over a dataset with ``input_features``."""
        return merge_features(input_features, self.features())

    def __getstate__(self) -> dict[str, Any]:
        return {"experts": self.experts, "record_timings": self.record_timings, "version": __version__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.experts = state["experts"]
        self.record_timings = state["record_timings"]

    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: int | None = None) -> dict[str, list]:
        media = MediaBatch(batch)
        outputs: dict[str, list] = {}
        timings = []
        for expert in self.experts:
            # later experts read earlier ones' columns (the music gate reads the tagger's music_score)
            media.batch = {**media.batch, **outputs}
            started = time.perf_counter()
            outputs.update(expert.process(media, rank))
            seconds = (time.perf_counter() - started) / max(1, media.size)
            timings.append({"stage": expert.stage, "seconds": seconds})
        outputs[ERRORS] = media.errors
        if self.record_timings:
            outputs[STAGE_SECONDS] = [timings] * media.size
        return outputs
