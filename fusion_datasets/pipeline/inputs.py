"""The runner's input as a ``datasets.Dataset`` of clip references (audio is decoded later, per batch)."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets

from fusion_datasets.pipeline.config import InputConfig

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")


def pair_media(folder: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """Media files under ``folder`` by key (relative path sans suffix): ``(audio, video)``, one may be None.

    An audio file and the video of the same stem are one clip (the builders pair files the same way).
    """
    audio: dict[str, Path] = {}
    video: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        key = str(path.relative_to(folder).with_suffix(""))
        if suffix in AUDIO_SUFFIXES:
            audio[key] = path
        elif suffix in VIDEO_SUFFIXES:
            video[key] = path
    return {key: (audio.get(key), video.get(key)) for key in sorted(set(audio) | set(video))}


def scan_folder(folder: Path) -> datasets.Dataset:
    """One row per media stem: an audio file, its video of the same stem, or a video alone (its audio track)."""
    pairs = pair_media(folder)
    if not pairs:
        raise ValueError(f"no audio or video files in {folder} (audio: {', '.join(AUDIO_SUFFIXES)})")
    return datasets.Dataset.from_dict({
        "id": list(pairs),
        "audio": [str(audio or video) for audio, video in pairs.values()],
        "video": [str(video) if video else None for _, video in pairs.values()],
        "source": ["folder"] * len(pairs),
    })


def load_input(config: InputConfig) -> datasets.Dataset:
    """The clips of ``config.path``: a media folder, Parquet, a ``save_to_disk`` folder or a Hub dataset."""
    if not config.path:
        raise ValueError("input.path is empty: give --input with a folder of clips or a dataset")
    path = Path(config.path)
    if path.is_dir() and (path / "dataset_info.json").exists():
        ds = datasets.load_from_disk(str(path))
    elif path.is_dir() and not any(path.rglob("*.parquet")):
        ds = scan_folder(path)
    elif path.suffix == ".parquet" or path.is_dir():
        files = [str(path)] if path.is_file() else sorted(str(p) for p in path.rglob("*.parquet"))
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    else:
        ds = datasets.load_dataset(config.path, split=config.split)
    if "audio" in ds.features and isinstance(ds.features["audio"], datasets.Audio):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))  # decoded per batch by the experts
    if "id" not in ds.column_names:
        raise ValueError(f"the input has no `id` column (columns: {', '.join(ds.column_names)})")
    if config.limit is not None:
        ds = ds.select(range(min(config.limit, ds.num_rows)))
    return ds
