"""The runner's input as a ``datasets.Dataset`` of clip references (audio is decoded later, per batch).

A folder is a media folder (scanned for audio and video files, symlinked folders followed), a Parquet
folder or a ``save_to_disk`` folder; ``input.format`` says which where the layout does not. A file is
Parquet; anything else is a Hub dataset id or a URL (``hf://``, ``s3://``, ``gs://``): its Parquet files are
indexed where they are and read a part at a time (:mod:`fusion_datasets.pipeline.remote`), other formats
loaded whole with ``datasets.load_dataset``. Every input is checked before any work: an ``id`` and an
``audio`` (or ``video``) column. ``input.segment_seconds`` cuts long files into clips by their
container's duration, which is read without decoding.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusion_datasets.clip_audio import seconds_label
from fusion_datasets.errors import UserError
from fusion_datasets.http_errors import redact
from fusion_datasets.loading import undecoded
from fusion_datasets.media import claimed_duration
from fusion_datasets.media_files import (
    AUDIO_SUFFIXES,
    VIDEO_SUFFIXES,
    MediaPairs,
    find_files,
    pair_files,
    shown_paths,
)
from fusion_datasets.pipeline.config import InputConfig
from fusion_datasets.pipeline.remote import REMOTE_PREFIXES, RemoteInput, RemoteParquet, RemoteTars

logger = logging.getLogger(__name__)

MEDIA_COLUMNS = ("audio", "video")  # the columns that name a clip's files
_SAVED = ("dataset_info.json", "dataset_dict.json")  # what save_to_disk writes (a Dataset, a DatasetDict)
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


class InputError(UserError):
    """An input that cannot be run: missing, empty, without audio, or with ids that are not unique."""


@dataclass(frozen=True)
class Input:
    """An input's clips, and the folders its scan (or the files its index) could not read (``input_unreadable``)."""

    dataset: datasets.Dataset
    unreadable: tuple[str, ...] = ()
    source: RemoteInput | None = None  # a remote input (Parquet, WebDataset), whose index ``dataset`` is


def _clips(pairs: MediaPairs) -> datasets.Dataset:
    """One row per clip: an audio file, its video of the same stem, or a video alone (its audio track).

    Paths are absolute (symlinks kept as they are), so the dataset loads from any working directory.
    """
    return datasets.Dataset.from_dict({
        "id": list(pairs),
        "audio": [os.path.abspath(audio or video) for audio, video in pairs.values()],
        "video": [os.path.abspath(video) if video else None for _, video in pairs.values()],
        "source": ["folder"] * len(pairs),
    })


def _read_parquet(files: Sequence[Path], where: str) -> datasets.Dataset:
    if not files:
        raise InputError(f"no Parquet files under {where} (input.format=parquet)")
    if not sum(pq.read_metadata(file).num_rows for file in files):
        raise InputError(f"the input {where} has no clips (0 rows)")
    return datasets.load_dataset("parquet", data_files=[str(file) for file in files], split="train")


def _read_saved(path: Path, split: str) -> datasets.Dataset:
    """A ``save_to_disk`` folder: a Dataset, or the ``split`` of a DatasetDict (its only split if it has one)."""
    saved = datasets.load_from_disk(str(path))
    if not isinstance(saved, datasets.DatasetDict):
        return saved
    if split in saved:
        return saved[split]
    if len(saved) == 1:
        (only,) = saved
        logger.info("input %s has one split, %r: reading it (input.split=%r)", path, only, split)
        return saved[only]
    raise InputError(f"the saved dataset {path} has no split {split!r}; its splits: {', '.join(saved)}. "
                     "Set input.split to one of them.")


def _read_folder(path: Path, config: InputConfig, exclude: Sequence[Path]) -> Input:
    """A folder by ``input.format``; ``auto``: saved dataset, else media, else Parquet if it has no media."""
    if config.format == "auto" and any((path / name).is_file() for name in _SAVED):
        return Input(_read_saved(path, config.split))
    files, unreadable = find_files(path, exclude, (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES, ".parquet"))
    tables = [file for file in files if file.suffix.lower() == ".parquet"]
    if config.format == "parquet":
        return Input(_read_parquet(tables, config.path), tuple(unreadable))
    pairs = pair_files(path, files, unreadable)
    if pairs and tables:
        logger.warning("%s is read as a folder of media files; the %d Parquet files in it are not read "
                       "(input.format=parquet reads them instead)", path, len(tables))
    if pairs:
        return Input(_clips(pairs), tuple(unreadable))
    if tables and config.format == "auto":
        return Input(_read_parquet(tables, config.path), tuple(unreadable))
    cannot = f"; {len(unreadable)} folders cannot be read: {shown_paths(unreadable)}" if unreadable else ""
    raise InputError(f"no audio or video files in {path} (audio: {', '.join(AUDIO_SUFFIXES)}; "
                     f"video: {', '.join(VIDEO_SUFFIXES)}){cannot}")


def _find_remote(config: InputConfig) -> RemoteInput | None:
    """The input's Parquet files, else its WebDataset shards, as listed; ``None`` where it has neither."""
    return (RemoteParquet.find(config.path, config.split, config.config)
            or RemoteTars.find(config.path, config.split, config.config))


def _read_remote(config: InputConfig) -> Input:
    """A URL or a Hub dataset id: its Parquet files or WebDataset shards indexed where they are. A Hub dataset of
    another format, or one cut into segments (every clip's duration is read first), is loaded whole."""
    if config.path.startswith(REMOTE_PREFIXES):
        if config.segment_seconds is not None:
            raise InputError(f"input.segment_seconds reads every file's duration: download {config.path} and "
                             "give its folder as the input")
        try:
            source = _find_remote(config)
        except Exception as error:  # a missing fsspec backend (s3fs, gcsfs), credentials, no such bucket
            raise InputError(f"input {config.path!r} cannot be listed: "
                             f"{redact(f'{type(error).__name__}: {error}')}") from error
        if source is None:
            raise InputError(f"input {config.path!r} holds no Parquet files or WebDataset shards (.tar)")
        return Input(source.index(), tuple(source.unreadable), source=source)
    if config.segment_seconds is None and _HUB_ID.fullmatch(config.path):
        try:
            source = _find_remote(config)
        except UserError:  # a config or split its card does not declare
            raise
        except Exception as error:  # noqa: BLE001 - load_dataset below says why it cannot be read, in its words
            logger.debug("cannot list the files of %s: %s", config.path, error)
            source = None
        if source is not None:
            return Input(source.index(), tuple(source.unreadable), source=source)
    return Input(_load_hub(config))


def _load_hub(config: InputConfig) -> datasets.Dataset:
    if not _HUB_ID.fullmatch(config.path):
        raise InputError(f"input {config.path!r} does not exist (a folder of clips, a Parquet file, a saved "
                         "dataset, or a Hub dataset id ORG/NAME)")
    try:
        return datasets.load_dataset(config.path, config.config, split=config.split)
    except (FileNotFoundError, ConnectionError, ValueError) as error:
        raise InputError(f"input {config.path!r} is not a local path, and as a Hub dataset it cannot be loaded: "
                         f"{error}") from error


def _checked(ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """``ds`` with the columns a run needs, its audio left undecoded; a video path stands for a missing audio."""
    columns = ", ".join(ds.column_names)
    if "id" not in ds.column_names:
        raise InputError(f"the input {where} has no `id` column (columns: {columns})")
    if ds.features["id"] not in (datasets.Value("string"), datasets.Value("large_string")):
        raise InputError(f"`id` must be a string column; in the input {where} it holds {ds.features['id']}. "
                         "Cast it first: ds.cast_column('id', datasets.Value('string')).")
    if "audio" not in ds.column_names:
        if ds.features.get("video") != datasets.Value("string"):
            raise InputError(f"the input {where} has no `audio` column (columns: {columns}): each clip needs "
                             "`audio` (a path, {bytes, path} or a datasets.Audio) or `video` (a path)")
        ds = ds.add_column("audio", ds["video"])
    return undecoded(ds)  # decoded per batch by the experts


def segment_bounds(duration: float | None, seconds: float) -> list[tuple[float, float]]:
    """Where a file of ``duration`` is cut into clips of ``seconds``; ``[]`` when it stays whole.

    A rest shorter than half a clip joins the last clip, so clips are 0.5 to 1.5 times ``seconds``.

    Example:
        >>> segment_bounds(24.0, 10.0)
        [(0.0, 10.0), (10.0, 24.0)]
    """
    count = math.floor(duration / seconds + 0.5) if duration else 0
    if count < 2:
        return []
    return [(round(index * seconds, 6), duration if index == count - 1 else round((index + 1) * seconds, 6))
            for index in range(count)]


def segment(ds: datasets.Dataset, seconds: float) -> datasets.Dataset:
    """``ds`` with each whole file (no ``start``/``end``) longer than ``seconds`` cut into clips.

    A clip's id is its file's id and its range, ``<id>@<start>-<end>`` (``rec/a@10-20``), and its
    ``start``/``end`` say which part of the file the experts decode.
    """
    features = datasets.Features({**ds.features, "start": datasets.Value("float64"),
                                  "end": datasets.Value("float64")})

    def cut(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows: list[dict[str, Any]] = []
        for row in range(len(batch["id"])):
            values = {"start": None, "end": None, **{name: column[row] for name, column in batch.items()}}
            whole = values["start"] is None and values["end"] is None
            bounds = segment_bounds(claimed_duration(values["audio"]), seconds) if whole else []
            rows += [{**values, "id": f"{values['id']}@{seconds_label(start)}-{seconds_label(end)}", "start": start,
                      "end": end} for start, end in bounds] or [values]
        return {name: [values[name] for values in rows] for name in features}

    return ds.map(cut, batched=True, batch_size=64, remove_columns=ds.column_names, features=features,
                  desc=f"cutting files into {seconds:g} s clips")


def read_input(config: InputConfig, exclude: Sequence[Path] = ()) -> Input:
    """The clips of ``config.path``: a media folder, Parquet, a ``save_to_disk`` folder or a Hub dataset.

    ``exclude`` names folders a folder's scan leaves out (the run's own output).
    """
    if not config.path:
        raise InputError("input.path is empty: give --input with a folder of clips or a dataset")
    path = Path(config.path)
    inside = [folder for folder in exclude if _within(path, Path(folder))]
    if inside:
        raise InputError(f"the output cannot be the input folder or hold it: --input {config.path} is inside "
                         f"--output {inside[0]}. Write the output to another folder.")
    if path.is_dir():
        loaded = _read_folder(path, config, exclude)
    elif config.format == "media":
        raise InputError(f"input {config.path!r} is not a folder: input.format=media reads a folder of "
                         "audio/video files")
    elif path.is_file() and path.suffix.lower() == ".parquet":
        loaded = Input(_read_parquet([path], config.path))
    elif path.exists():
        raise InputError(f"input {config.path!r} is a file but not Parquet: give a folder of clips, a Parquet "
                         "file, a saved dataset or a Hub dataset id")
    else:
        loaded = _read_remote(config)
    ds = _checked(loaded.dataset, config.path)
    if config.segment_seconds is not None:
        ds = segment(ds, config.segment_seconds)
    if config.limit is not None:
        ds = ds.select(range(min(config.limit, ds.num_rows)))
    if ds.num_rows == 0:
        raise InputError(f"the input {config.path} has no clips (0 rows)")
    pa.default_memory_pool().release_unused()  # what converting the input to Arrow left in Arrow's allocator
    return replace(loaded, dataset=ds)


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or under it, links resolved."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def load_input(config: InputConfig, exclude: Sequence[Path] = ()) -> datasets.Dataset:
    """The clips of ``config.path`` (see :func:`read_input`)."""
    return read_input(config, exclude).dataset


def column_values(ds: datasets.Dataset, name: str) -> list[Any]:
    """Column ``name`` of ``ds`` as a list, read from Arrow a chunk at a time (``ds[name]`` goes row by row)."""
    values: list[Any] = []
    for chunk in ds.select_columns([name]).with_format("arrow")[:].column(0).chunks:
        values.extend(chunk.to_pylist())
    return values


def clip_ids(ds: datasets.Dataset) -> list[str]:
    """The input's ids, checked: each a non-empty string, none twice (else an error naming the first few)."""
    ids = column_values(ds, "id")
    bad = [row for row, clip in enumerate(ids) if not clip]  # `id` is a string column (_checked): None or ""
    if bad:
        rows = ", ".join(f"row {row} ({ids[row]!r})" for row in bad[:5])
        raise InputError(f"{len(bad)} clips have no id (a null or empty `id`): {rows}. Every clip needs a "
                         "unique id: fill the `id` column and rerun.")
    ordered = sorted(ids)  # a sorted copy holds pointers only: a set of a million ids would take 4x the memory
    if any(clip == following for clip, following in itertools.pairwise(ordered)):
        counts = Counter(ids)
        repeated = [clip for clip, count in counts.items() if count > 1]
        names = ", ".join(f"{clip!r} ({counts[clip]} times)" for clip in repeated[:5])
        raise InputError(f"{len(repeated)} ids occur more than once in the input: {names}. Ids must be "
                         "unique: a clip's id keys its results across reruns.")
    return ids


def media_paths(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The file each value of a media column names: a path as it is, or an undecoded audio's ``path``."""
    return pc.struct_field(column, "path") if pa.types.is_struct(column.type) else column


def input_files(ds: datasets.Dataset, columns: Sequence[str] = ()) -> pa.Table:
    """The files each clip of ``ds`` names, as paths, one row per clip: in ``audio``, ``video``, every audio column
    and ``columns`` (the audio columns the steps read), where ``ds`` has them.

    Read as Arrow batches, so embedded audio is not copied: a moved input changes these paths, not the clips.
    """
    names = [name for name, feature in ds.features.items()
             if (name in {*MEDIA_COLUMNS, *columns} and feature == datasets.Value("string"))
             or isinstance(feature, datasets.Audio)]
    batches = ds.select_columns(names).with_format("arrow").iter(batch_size=10_000)
    return pa.concat_tables([pa.table({name: media_paths(batch.column(name)) for name in names})
                             for batch in batches])
