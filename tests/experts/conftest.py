"""Synthetic clip datasets shared by the expert tests."""

from __future__ import annotations

import datasets
import pytest

from fusion_datasets.testing import media


@pytest.fixture(scope="session")
def good_clips(tmp_path_factory) -> dict[str, str]:
    """Four 3 s clips at different rates and channel counts: speech, music, noise, silence."""
    folder = tmp_path_factory.mktemp("good-clips")
    recipes = {
        "speech": (media.speech(3.0, 16000), 16000),
        "music": (media.music(3.0, 44100, channels=2), 44100),
        "noise": (media.noise(3.0, 22050), 22050),
        "silence": (media.silence(3.0, 16000), 16000),
    }
    return {name: str(media.write_audio(folder / f"{name}.wav", audio, rate))
            for name, (audio, rate) in recipes.items()}


@pytest.fixture(scope="session")
def bad_clips(tmp_path_factory) -> dict[str, str]:
    return media.write_bad_audio_files(tmp_path_factory.mktemp("bad-clips"))


def clips_dataset(paths: dict[str, str], folder) -> datasets.Dataset:
    """A Parquet-backed dataset (``id``, ``audio`` path) so that ``map`` results are cached on disk."""
    in_memory = datasets.Dataset.from_dict({"id": list(paths), "audio": list(paths.values())})
    in_memory.to_parquet(str(folder / "clips.parquet"))
    return datasets.Dataset.from_parquet(str(folder / "clips.parquet"), cache_dir=str(folder / "cache"))


def run_map(ds: datasets.Dataset, expert, **kwargs) -> datasets.Dataset:
    kwargs.setdefault("batch_size", 4)
    return ds.map(expert, batched=True, with_rank=True, features=expert.output_features(ds.features), **kwargs)
