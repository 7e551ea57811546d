"""What a published dataset holds of its clips' audio: never a path of the machine that made it.

``output.publish_audio`` (``push --publish-audio``) chooses:

- ``embed``: the audio in the Parquet, a ``datasets.Audio`` column the Hub's viewer plays; a segment is
  embedded as the segment (:func:`fusion_datasets.clip_audio.embedded`);
- ``source``: no audio; each row names its clip by a public source (``source_id``, ``start``, ``end``: a YouTube id
  and the times in the video for AudioSet-style ids, else the clip's file name and its range in the file);
- ``none``: no audio;
- ``auto`` (the default): rows whose audio is embedded are published as they are; rows that name files of this
  machine are refused before anything is uploaded, with a line that names the setting.

Under every mode but ``auto`` the Parquet files are rewritten into a view of the output
(``.cache/publish/<mode>/``, which a push of the folder leaves out), where
:func:`fusion_datasets.pipeline.outputs.publish_view` renders the card; ``video`` keeps its file's name only.

Example:
    >>> view, files = published_files(Path("out"), sorted(Path("out").glob("data/*/*.parquet")), "embed")
    >>> view.as_posix(), len(files)
    ('out/.cache/publish/embed', 6)
    >>> public_source("dQw4w9WgXcQ_30_40", "audioset", "/clips/dQw4w9WgXcQ_30_40.wav", None, None)
    ('dQw4w9WgXcQ', 30.0, 40.0)
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fusion_datasets.clip_audio import local_file, typed_audio, write_parquet
from fusion_datasets.errors import UserError
from fusion_datasets.files import temporary_path

PUBLISH_AUDIO = ("auto", "embed", "source", "none")
VIEW = ".cache/publish"  # under the output: what the Hub gets, one folder per mode
_NUMBER = r"\d+(?:\.\d+)?"
_YOUTUBE_CLIP = re.compile(rf"(?P<ytid>[\w-]{{11}})_(?P<start>{_NUMBER})_(?P<end>{_NUMBER})"
                           rf"(?:@(?P<cut>{_NUMBER})-(?P<to>{_NUMBER}))?")
_FROM_YOUTUBE = ("audioset", "audiocaps", "vggsound")  # sources whose ids are <ytid>_<start>_<end>
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/[^\s'\"(),;:]+")  # a POSIX path from the root, not a URL's


class LocalPathsError(UserError):
    """A push of rows whose audio names files of this machine, without ``publish_audio`` saying what to publish."""


def public_source(clip_id: str, source: str | None, audio: str | None, start: float | None, end: float | None
                  ) -> tuple[str | None, float | None, float | None]:
    """``(source_id, start, end)`` naming a clip publicly: a YouTube id and the times in the video for a clip of
    AudioSet, AudioCaps or VGGSound (``<ytid>_<start>_<end>``, a segment of it too), else its file's name and
    its range in the file."""
    match = _YOUTUBE_CLIP.fullmatch(clip_id) if source in _FROM_YOUTUBE else None
    if match is None:
        return (PurePath(audio).name if audio else None), start, end
    begin = float(match["start"])
    if match["cut"] is not None:
        return match["ytid"], begin + float(match["cut"]), begin + float(match["to"])
    return match["ytid"], begin, float(match["end"])


def local_rows(path: Path) -> tuple[int, str | None]:
    """How many rows of a Parquet file name a file of this machine in ``audio`` or ``video``, or in the messages
    of their ``errors``, and the first such file."""
    names = pq.read_schema(path).names
    count, first = 0, None
    columns = [name for name in ("audio", "video", "errors") if name in names]
    for batch in pq.ParquetFile(path).iter_batches(columns=columns):
        named: list[str | None] = [None] * batch.num_rows  # per row, the first local file it names
        for name, column in zip(batch.schema.names, batch.columns):
            values = column.to_pylist()
            if name == "errors":
                values = [next((match.group() for entry in errors or [] for match in
                                [_ABSOLUTE_PATH.search(entry["message"] or "")] if match), None) for errors in values]
            elif pa.types.is_struct(column.type):
                values = [local_file(value) for value in values]
            named = [current or value or None for current, value in zip(named, values)]
        found = [value for value in named if value]
        count += len(found)
        first = first or (found[0] if found else None)
    return count, first


def check_publishable(files: Sequence[Path], mode: str) -> None:
    """Raise :class:`LocalPathsError` where ``mode`` is ``auto`` and a file's rows name files of this machine."""
    if mode != "auto":
        return
    for path in files:
        count, first = local_rows(path) if path.suffix == ".parquet" else (0, None)
        if count:
            raise LocalPathsError(
                f"{path.parent.name}/{path.name}: {count} rows name files of this machine ({first}), which a "
                "published dataset must not hold; choose what it holds with output.publish_audio (push "
                "--publish-audio): embed (the audio in the Parquet, playable on the Hub), source (each clip's "
                "public source id and times, no audio) or none (no audio)")


def without_paths(message: str, known: Iterable[str | None] = ()) -> str:
    """``message`` with the paths of this machine it names cut to their file names: ``known`` ones whole (spaces
    and all), then any other absolute path.

    Example:
        >>> without_paths("Could not open input file: /home/ana/My clips/a.wav", ["/home/ana/My clips/a.wav"])
        'Could not open input file: a.wav'
        >>> without_paths("no such file /data/x/y.flac (see https://example.org/a/b)")
        'no such file y.flac (see https://example.org/a/b)'
    """
    for path in sorted(filter(None, known), key=len, reverse=True):
        message = message.replace(path, PurePath(path).name)
    return _ABSOLUTE_PATH.sub(lambda match: PurePath(match.group()).name, message)


def _public_errors(errors: list[dict[str, Any]] | None, files: list[str | None]) -> list[dict[str, Any]] | None:
    """A row's ``errors`` with the paths of this machine in their messages cut to file names (``files`` whole)."""
    if errors is None:
        return None
    return [{**entry, "message": entry["message"] and without_paths(entry["message"], files)} for entry in errors]


def _published_batch(batch: dict[str, list[Any]], mode: str) -> dict[str, list[Any]]:
    rows = len(batch["id"])
    batch = dict(batch)
    if "errors" in batch:  # a decode error names the clip's file
        files = zip(batch.get("audio") or [None] * rows, batch.get("video") or [None] * rows)
        batch["errors"] = [_public_errors(errors, [local_file(audio), video])
                           for errors, (audio, video) in zip(batch["errors"], files)]
    if "video" in batch:
        batch["video"] = [PurePath(video).name if video else None for video in batch["video"]]
    if mode == "source" and "audio" in batch:
        nothing = [None] * rows
        sources = [public_source(clip, source, local_file(audio) or (audio or {}).get("path"), start, end)
                   for clip, source, audio, start, end in zip(batch["id"], batch.get("source") or nothing,
                                                                batch["audio"], batch.get("start") or nothing,
                                                                batch.get("end") or nothing)]
        batch.update({name: [source[index] for source in sources]
                      for index, name in enumerate(("source_id", "start", "end"))})
    if mode in ("source", "none"):
        batch.pop("audio", None)
    return batch


def publish_parquet(path: Path, target: Path, mode: str) -> Path:
    """Write ``path``'s rows as ``mode`` publishes them to ``target`` (atomically); returns ``target``."""
    import datasets

    from fusion_datasets.loading import undecoded

    ds = undecoded(datasets.Dataset.from_parquet(str(path)))
    if mode == "embed":
        ds = undecoded(typed_audio(ds, embed=True))  # read undecoded below: cues keep the clips that do not decode
    features = dict(ds.features)
    if mode in ("source", "none"):
        features.pop("audio", None)
    elif "audio" in features:
        features["audio"] = datasets.Audio()  # written decodable: load_dataset decodes it as it is
    if mode == "source" and "audio" in ds.column_names:
        features.update(source_id=datasets.Value("string"), start=datasets.Value("float64"),
                        end=datasets.Value("float64"))
    ds = ds.map(_published_batch, batched=True, fn_kwargs={"mode": mode}, features=datasets.Features(features),
                remove_columns=["audio"] if "audio" not in features and "audio" in ds.column_names else None,
                desc=f"publishing {path.name} ({mode})")
    temporary = temporary_path(target)
    write_parquet(ds, temporary)
    temporary.replace(target)
    return target


def published_files(root: Path, files: Sequence[Path], mode: str) -> tuple[Path, list[Path]]:
    """``(folder, files)`` to upload for ``files`` of the output ``root``: themselves under ``auto`` (checked by
    :func:`check_publishable`), else their copies in the view ``root/.cache/publish/<mode>``, Parquet rewritten
    (a part already rewritten is reused: a part's name changes with its content)."""
    check_publishable(files, mode)
    if mode == "auto":
        return root, list(files)
    view, copies = root / VIEW / mode, []
    for path in files:
        target = view / Path(path).relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix != ".parquet":
            shutil.copyfile(path, target)
        elif not target.exists() or target.stat().st_mtime < path.stat().st_mtime:
            publish_parquet(path, target, mode)
        copies.append(target)
    return view, copies
