"""Fixtures for the builder tests: tiny real audio files, builds run through the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest

from fusion_datasets.cli import main
from fusion_datasets.testing import media


@pytest.fixture
def write_clip() -> Callable[..., Path]:
    """``write_clip(path, seconds=0.3, seed=0)``: a short real audio file of noise (wav, flac: by suffix)."""
    def write(path: Path, seconds: float = 0.3, seed: int = 0) -> Path:
        return media.write_audio(path, media.noise(seconds, 16000, seed=seed), 16000)

    return write


@pytest.fixture
def cli_build() -> Callable[..., dict]:
    """``cli_build(name, data_dir, output, *options)``: ``fusion-datasets build`` through ``cli.main``.

    Returns the build's ``stats.json``.
    """

    def run(name: str, data_dir: Path, output: Path, *extra: str) -> dict:
        assert main(["build", name, "--data-dir", str(data_dir), "--output", str(output), *extra]) == 0
        return json.loads((output / "stats.json").read_text())

    return run


@pytest.fixture
def load() -> Callable[..., datasets.Dataset]:
    """``load(output, split="test", config=None)``: a build read back with ``datasets.load_dataset``."""
    return lambda output, split="test", config=None: datasets.load_dataset(str(output), config, split=split)


@pytest.fixture
def where(tmp_path) -> Callable[[dict], list[tuple[str, str]]]:
    """``where(stats)``: the (reason, file:line) of a build's problems, paths relative to ``tmp_path``."""
    return lambda stats: sorted((problem["reason"], problem["where"].replace(f"{tmp_path}/", ""))
                                for problem in stats["problems"])
