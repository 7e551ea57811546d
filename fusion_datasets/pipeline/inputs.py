"""The runner's input as a ``datasets.Dataset`` of clip references (audio is decoded later, per batch)."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from fusion_datasets.errors import UserError
from fusion_datasets.pipeline.config import InputConfig

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


class InputError(UserError):
    """An input that cannot be run: missing, empty, without audio, or with ids that are not unique."""


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def pair_media(folder: Path, exclude: Sequence[Path] = ()) -> dict[str, tuple[Path | None, Path | None]]:
    """Media files under ``folder`` by key (relative path sans suffix): ``(audio, video)``, one may be None.

    An audio file and the video of the same stem are one clip (the builders pair files the same way).
    Files under the ``exclude`` folders (a run's own output inside its input) are left out.
    """
    audio: dict[str, Path] = {}
    video: dict[str, Path] = {}
    skip = [Path(os.path.abspath(path)) for path in exclude]
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if skip and _inside(Path(os.path.abspath(path)), skip):
            continue
        key = str(path.relative_to(folder).with_suffix(""))
        if suffix in AUDIO_SUFFIXES:
            audio[key] = path
        elif suffix in VIDEO_SUFFIXES:
            video[key] = path
    return {key: (audio.get(key), video.get(key)) for key in sorted(set(audio) | set(video))}


def scan_folder(folder: Path, exclude: Sequence[Path] = ()) -> datasets.Dataset:
    """One row per media stem: an audio file, its video of the same stem, or a video alone (its audio track)."""
    pairs = pair_media(folder, exclude)
    if not pairs:
        raise InputError(f"no audio or video files in {folder} (audio: {', '.join(AUDIO_SUFFIXES)}; "
                         f"video: {', '.join(VIDEO_SUFFIXES)})")
    return datasets.Dataset.from_dict({
        "id": list(pairs),
        "audio": [str(audio or video) for audio, video in pairs.values()],
        "video": [str(video) if video else None for _, video in pairs.values()],
        "source": ["folder"] * len(pairs),
    })


def _load_hub(config: InputConfig) -> datasets.Dataset:
    if not _HUB_ID.fullmatch(config.path):
        raise InputError(f"input {config.path!r} does not exist (a folder of clips, a Parquet file, a saved "
                         "dataset, or a Hub dataset id ORG/NAME)")
    try:
        return datasets.load_dataset(config.path, split=config.split)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        raise InputError(f"input {config.path!r} is not a local path, and as a Hub dataset it cannot be loaded: "
                         f"{error}") from error


def load_input(config: InputConfig, exclude: Sequence[Path] = ()) -> datasets.Dataset:
    """The clips of ``config.path``: a media folder, Parquet, a ``save_to_disk`` folder or a Hub dataset.

    ``exclude`` names folders a media folder's scan leaves out (the run's own output).
    """
    if not config.path:
        raise InputError("input.path is empty: give --input with a folder of clips or a dataset")
    path = Path(config.path)
    skip = [Path(os.path.abspath(folder)) for folder in exclude]
    if path.is_dir() and (path / "dataset_info.json").exists():
        ds = datasets.load_from_disk(str(path))
    elif path.is_dir() and not any(not _inside(Path(os.path.abspath(p)), skip) for p in path.rglob("*.parquet")):
        ds = scan_folder(path, exclude)
    elif path.suffix == ".parquet" or path.is_dir():
        files = [str(path)] if path.is_file() else sorted(str(p) for p in path.rglob("*.parquet")
                                                           if not _inside(Path(os.path.abspath(p)), skip))
        if not sum(pq.read_metadata(file).num_rows for file in files):
            raise InputError(f"the input {config.path} has no clips (0 rows)")
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    elif path.exists():
        raise InputError(f"input {config.path!r} is a file but not Parquet: give a folder of clips, a Parquet "
                         "file, a saved dataset or a Hub dataset id")
    else:
        ds = _load_hub(config)
    if "audio" in ds.features and isinstance(ds.features["audio"], datasets.Audio):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))  # decoded per batch by the experts
    if "id" not in ds.column_names:
        raise InputError(f"the input {config.path} has no `id` column (columns: {', '.join(ds.column_names)})")
    if config.limit is not None:
        ds = ds.select(range(min(config.limit, ds.num_rows)))
    if ds.num_rows == 0:
        raise InputError(f"the input {config.path} has no clips (0 rows)")
    return ds


def clip_ids(ds: datasets.Dataset) -> list[str]:
    """The input's ids, checked: each a non-empty string, none twice (else an error naming the first few)."""
    ids = ds["id"]
    bad = [row for row, clip in enumerate(ids) if not isinstance(clip, str) or not clip]
    if bad:
        rows = ", ".join(f"row {row} ({ids[row]!r})" for row in bad[:5])
        raise InputError(f"{len(bad)} clips have no id (a null or empty `id`): {rows}. Every clip needs a "
                         "unique id: fill the `id` column and rerun.")
    counts = Counter(ids)
    repeated = [clip for clip, count in counts.items() if count > 1]
    if repeated:
        names = ", ".join(f"{clip!r} ({counts[clip]} times)" for clip in repeated[:5])
        raise InputError(f"{len(repeated)} ids occur more than once in the input: {names}. Ids must be "
                         "unique: a clip's id keys its results across reruns.")
    return ids
