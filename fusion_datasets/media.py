"""Audio decoding for the experts: each clip is decoded once and resampled once per rate.

A :class:`MediaBatch` wraps one ``datasets`` batch. Experts ask it for audio at their model's rate
(``media.audio(16000)``); it decodes every clip the first time, keeps the native samples, and caches
each resampled version, so experts chained over the same batch share the work. Rows that cannot be
decoded get ``None`` audio and one recorded error; they never stop the batch. Only a clip's range is
decoded, a whole file longer than the batch's ``max_seconds`` is refused from its container's metadata,
and audio that ends well before its header says gets a ``decode_warning`` entry in the row's errors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MIX = "mix"
DECODE_WARNING = "decode_warning"  # the stage of a row's warnings: recorded, but neither a failure nor retried
_SOURCE_LOCATION = re.compile(r"^\w+, \S+\.cpp:\d+, ")
_EMPTY = "audio is empty (no samples in the clip's range)"


class MediaError(ValueError):
    """A clip whose media cannot be used; the message is recorded as the row's error."""


@dataclass(frozen=True)
class Waveform:
    samples: np.ndarray  # (channels, frames), float32
    sampling_rate: int
    warning: str | None = None  # decoded, but not as the file claims (shorter than its header says)

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sampling_rate


def _source(value: Any) -> Any:
    """The thing a decoder reads: a path or bytes, from the forms a ``datasets`` audio cell takes."""
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise MediaError("audio cell has neither bytes, path nor array")
    return value


def decode_audio(value: Any, start: float | None = None, end: float | None = None,
                 max_seconds: float | None = None) -> Waveform:
    """Decode one ``audio`` cell: a path, ``{"bytes", "path"}``, ``{"array", "sampling_rate"}`` (and its
    ``warning``, from a decode made ahead) or an AudioDecoder.

    Only the ``start``-``end`` range is decoded. A whole file (no range) longer than ``max_seconds`` by its
    container's metadata is refused before decoding. Raises :class:`MediaError` for missing, corrupt, empty,
    too long or non-finite audio; audio that ends well before its header says gets a ``warning``.
    """
    if value is None:
        raise MediaError("no audio")
    if isinstance(value, Mapping) and value.get("array") is not None:
        samples = np.asarray(value["array"], dtype=np.float32)
        waveform = Waveform(np.atleast_2d(samples), int(value["sampling_rate"]), value.get("warning"))
    else:
        with _media_errors():
            decoder = _decoder(value)
            claimed = decoder.metadata.duration_seconds
            if max_seconds is not None and start is None and end is None and claimed and claimed > max_seconds:
                raise MediaError(f"the file is {claimed:.0f} s long, over input.max_seconds={max_seconds:g}: set "
                                 "input.segment_seconds to cut long files into clips, or raise input.max_seconds")
            decoded = decoder.get_samples_played_in_range(start or 0.0, end)
        waveform = Waveform(decoded.data.numpy().astype(np.float32, copy=False), int(decoded.sample_rate),
                            _shortfall(decoded.pts_seconds + decoded.duration_seconds, claimed, end))
    if waveform.samples.shape[1] == 0:
        raise MediaError(_EMPTY)
    if not np.isfinite(waveform.samples).all():
        raise MediaError("audio contains NaN or infinite samples")
    return waveform


def claimed_duration(value: Any) -> float | None:
    """The duration in seconds that a clip's container declares, read without decoding; None if unknown.

    A file that cannot be opened also gives None: its decode records the error, row by row.
    """
    if isinstance(value, Mapping) and value.get("array") is not None:
        return np.atleast_2d(value["array"]).shape[1] / int(value["sampling_rate"])
    try:
        with _media_errors():
            return _decoder(value).metadata.duration_seconds
    except MediaError:
        return None


def _decoder(value: Any) -> Any:
    from torchcodec.decoders import AudioDecoder

    return value if isinstance(value, AudioDecoder) else AudioDecoder(_source(value))


@contextmanager
def _media_errors() -> Iterator[None]:
    """Turn torchcodec's errors into a :class:`MediaError` with a short message."""
    try:
        yield
    except MediaError:
        raise
    except (RuntimeError, ValueError, OSError) as error:
        if "No audio frames were decoded" in str(error):
            raise MediaError(_EMPTY) from error
        if "best audio stream is unknown" in str(error):
            raise MediaError("the file has no audio track") from error
        raise MediaError(f"cannot decode audio: {_first_line(error)}") from error


def _shortfall(decoded_end: float, claimed: float | None, end: float | None) -> str | None:
    """A warning when the audio stops well before the end its container claims (a truncated file)."""
    if not claimed:
        return None
    expected = min(end, claimed) if end is not None else claimed
    if expected - decoded_end <= 0.5 + 0.02 * expected:  # codec padding and estimated durations differ a little
        return None
    return (f"the audio ends at {decoded_end:.2f} s but the file's header claims {claimed:.2f} s: "
            "the file may be truncated")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    # torchcodec prefixes its messages with "<function>, <source file>.cpp:<line>, "
    line = _SOURCE_LOCATION.sub("", text.splitlines()[0]) if text else ""
    return line or type(error).__name__


def resample(waveform: Waveform, sampling_rate: int, channels: int | None = 1) -> np.ndarray:
    """``waveform`` at ``sampling_rate`` with ``channels`` channels (1: mean downmix; None: unchanged)."""
    samples = waveform.samples
    if channels == 1:
        samples = samples.mean(axis=0, keepdims=True)
    elif channels is not None and samples.shape[0] != channels:
        # mono to stereo duplicates; more channels are averaged down first
        samples = np.repeat(samples.mean(axis=0, keepdims=True), channels, axis=0)
    if waveform.sampling_rate != sampling_rate:
        import torch
        import torchaudio

        tensor = torch.from_numpy(np.ascontiguousarray(samples))
        samples = torchaudio.functional.resample(tensor, waveform.sampling_rate, sampling_rate).numpy()
    return samples


def windows(samples: np.ndarray, size: int, min_size: int = 0) -> list[np.ndarray]:
    """Cut a 1-D signal into consecutive windows of ``size`` samples, zero-padding any shorter than ``min_size``."""
    pieces = [samples[start : start + size] for start in range(0, max(len(samples), 1), size)]
    return [np.pad(piece, (0, max(0, min_size - len(piece)))) for piece in pieces]


class MediaBatch:
    """One batch of clips with lazily decoded audio, tracks from separation, and per-row errors.

    A whole file (a row without ``start``/``end``) longer than ``max_seconds`` is a decode error, not decoded.
    """

    def __init__(self, batch: Mapping[str, Sequence[Any]], audio_column: str = "audio",
                 max_seconds: float | None = None) -> None:
        self.batch = batch
        self.audio_column = audio_column
        self.max_seconds = max_seconds
        self.size = len(next(iter(batch.values()))) if batch else 0
        self.errors: list[list[dict[str, str]]] = [list(row or []) for row in batch.get("errors", [None] * self.size)]
        self._tracks: dict[str, list[Waveform | None]] = {}
        self._resampled: dict[tuple[str, int, int | None], list[np.ndarray | None]] = {}

    def column(self, name: str, default: Any = None) -> list[Any]:
        """A column of the batch, or ``default`` for every row when the batch lacks it."""
        return list(self.batch[name]) if name in self.batch else [default] * self.size

    @property
    def decoded(self) -> bool:
        """Whether the clips were decoded (an expert asked for their audio)."""
        return MIX in self._tracks

    def add_error(self, row: int, stage: str, message: str) -> None:
        """Record an error of ``row``; the same error met again (an earlier step's decode) is kept once."""
        error = {"stage": stage, "message": message}
        if error not in self.errors[row]:
            self.errors[row].append(error)

    def _mix(self) -> list[Waveform | None]:
        if MIX not in self._tracks:
            starts, ends = self.column("start"), self.column("end")
            waveforms: list[Waveform | None] = []
            for row, value in enumerate(self.column(self.audio_column)):
                try:
                    waveforms.append(decode_audio(value, starts[row], ends[row], self.max_seconds))
                except MediaError as error:
                    self.add_error(row, "decode", str(error))
                    waveforms.append(None)
                    continue
                if waveforms[-1].warning:
                    self.add_error(row, DECODE_WARNING, waveforms[-1].warning)
            self._tracks[MIX] = waveforms
        return self._tracks[MIX]

    def waveforms(self, track: str = MIX) -> list[Waveform | None]:
        """Native-rate waveforms of ``track``; rows without it (separation off or failed) fall back to the mix."""
        mix = self._mix()
        if track == MIX:
            return mix
        if track not in self._tracks and track in self.batch:
            self._tracks[track] = [_decode_track(value) for value in self.batch[track]]
        separated = self._tracks.get(track, [None] * self.size)
        return [own if own is not None else fallback for own, fallback in zip(separated, mix)]

    def set_track(self, name: str, waveforms: list[Waveform | None]) -> None:
        """Store a separated track (for example ``vocals``) for the experts that follow."""
        if len(waveforms) != self.size:
            raise ValueError(f"track {name!r} has {len(waveforms)} rows, the batch has {self.size}")
        self._tracks[name] = waveforms
        self._resampled = {key: value for key, value in self._resampled.items() if key[0] != name}

    def audio(self, sampling_rate: int, track: str = MIX, channels: int | None = 1) -> list[np.ndarray | None]:
        """Each row's ``(channels, frames)`` samples at ``sampling_rate``, or ``None`` where decoding failed."""
        key = (track, sampling_rate, channels)
        if key not in self._resampled:
            self._resampled[key] = [
                None if waveform is None else resample(waveform, sampling_rate, channels)
                for waveform in self.waveforms(track)
            ]
        return self._resampled[key]


def _decode_track(value: Any) -> Waveform | None:
    """A separated track read from a column; one that cannot be used falls back to the mix, said in the log."""
    try:
        return decode_audio(value)
    except MediaError as error:
        logger.warning("a separated track cannot be used (%s); the mix is used instead", error)
        return None
