"""A clip's audio in a dataset: a typed ``datasets.Audio`` column of references or embedded bytes, and FLAC.

A clip is a whole file, or the ``start``-``end`` range of one (``<id>@<start>-<end>``, :mod:`input segments
<fusion_datasets.pipeline.inputs>`). Embedding a whole file keeps its own bytes; a segment is decoded and
encoded as FLAC, so that what a reader decodes is the clip and not the whole file.

Example:
    >>> local_file({"bytes": None, "path": "/data/a.wav"}), local_file({"bytes": b"RIFF", "path": "a.wav"})
    ('/data/a.wav', None)
"""

from __future__ import annotations

import io
import logging
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion_datasets.media import MediaError, decode_audio

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

AUDIO_ROWS_PER_GROUP = 100  # rows per Parquet row group of a config with audio (embedded clips weigh megabytes)


def encode_flac(samples: np.ndarray, sampling_rate: int) -> bytes:
    """``(channels, frames)`` float samples as 16-bit FLAC bytes (values past full scale are clipped)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0).T, sampling_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def local_file(audio: str | dict | None) -> str | None:
    """The file a clip's ``audio`` value names without holding its bytes, or ``None``."""
    if isinstance(audio, dict):
        return None if audio.get("bytes") else audio.get("path") or None
    return audio or None


def seconds_label(seconds: float) -> str:
    """A time in a segment's id or name: to the millisecond, without trailing zeros.

    Example:
        >>> seconds_label(20.0), seconds_label(603.25), seconds_label(1 / 3)
        ('20', '603.25', '0.333')
    """
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def segment_name(path: str | None, start: float | None, end: float | None) -> str:
    """The file name an embedded clip keeps: its file's, with the range of a segment as the segment's id has it.

    Example:
        >>> segment_name("/data/rec.wav", None, None), segment_name("/data/rec.wav", 10.0, 20.0)
        ('rec.wav', 'rec@10-20.flac')
    """
    name = PurePath(path or "clip.wav").name
    if start is None and end is None:
        return name
    return f"{PurePath(name).stem}@{seconds_label(start or 0)}-{seconds_label(end) if end is not None else 'end'}.flac"


def embedded(audio: str | dict | None, start: float | None = None, end: float | None = None) -> dict | None:
    """``{bytes, path}`` of a clip: a whole file's own bytes, a segment decoded and encoded as FLAC.

    ``path`` is a file name only, never a path of this machine. A clip that cannot be read keeps its reference
    (its row's decode error already says why) and is warned about.
    """
    file = local_file(audio)
    if file is None:
        return audio if isinstance(audio, dict) else None
    try:
        if start is None and end is None:
            with open(file, "rb") as handle:
                return {"bytes": handle.read(), "path": segment_name(file, None, None)}
        waveform = decode_audio(file, start, end)
        return {"bytes": encode_flac(waveform.samples, waveform.sampling_rate), "path": segment_name(file, start, end)}
    except (OSError, MediaError) as error:
        logger.warning("cannot embed %s: %s", file, error)
        return {"bytes": None, "path": file}


def typed_audio(ds: datasets.Dataset, embed: bool = False) -> datasets.Dataset:
    """``ds`` with ``audio`` a ``datasets.Audio`` column that ``load_dataset`` decodes without a cast: references to
    the clips' files, or (``embed``) the clips' bytes (:func:`embedded`)."""
    import datasets

    if "audio" not in ds.column_names:
        return ds
    features = datasets.Features({**ds.features, "audio": datasets.Audio()})
    if ds.num_rows == 0:  # datasets casts no empty dataset
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    if not embed:
        return ds.cast(features)  # a path string becomes {bytes: None, path}: Audio's own storage

    def embed_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = len(batch["audio"])
        starts, ends = batch.get("start") or [None] * rows, batch.get("end") or [None] * rows
        return {"audio": [embedded(audio, start, end) for audio, start, end in zip(batch["audio"], starts, ends)]}

    if isinstance(ds.features["audio"], datasets.Audio):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
    return ds.map(embed_batch, batched=True, batch_size=16, features=features, desc="embedding audio")


def write_parquet(ds: datasets.Dataset, path: str | Path) -> None:
    """``ds.to_parquet(path)``, with :data:`AUDIO_ROWS_PER_GROUP` rows per row group where it has audio: left to
    itself, ``datasets`` stats every file an ``Audio`` column references to size them, and fails on one that is gone."""
    ds.to_parquet(str(path), batch_size=AUDIO_ROWS_PER_GROUP if "audio" in ds.column_names else None)
