"""Cutting a downloaded stream to its segment with ffmpeg, and checking what was written.

Audio becomes FLAC at the source's rate and channels; video becomes H.264 + AAC in mp4 (what decord and
torchcodec read), cut at the exact times (re-encoded, not cut at keyframes).

Example:
    >>> from fusion_datasets.synthetic import noise, write_audio
    >>> source = write_audio("source.wav", noise(12.0, 48000, channels=2), 48000)  # a downloaded stream, say
    >>> probe_audio(cut(source, 1.0, 11.0, Path(".a.flac.tmp"), "flac"))
    AudioFacts(duration=10.0, sample_rate=48000, channels=2)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

_CODECS = {"flac": ["-map", "0:a:0", "-vn", "-c:a", "flac"],
           "mp4": ["-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt",
                   "yuv420p", "-c:a", "aac", "-movflags", "+faststart"]}


class CutError(Exception):
    """ffmpeg could not cut the stream (no audio or video track, undecodable data)."""


class AudioFacts(NamedTuple):
    duration: float
    sample_rate: int
    channels: int


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise CutError(f"the {name} binary is not installed (apt-get install ffmpeg)")
    return found


def cut(source: Path, start: float, end: float, target: Path, container: str) -> Path:
    """Write ``[start, end]`` of ``source`` to ``target`` as ``container`` (``flac`` or ``mp4``)."""
    command = [_binary("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", "-ss", f"{start}", "-i", str(source),
               "-t", f"{end - start}", *_CODECS[container], "-f", container, str(target)]
    done = subprocess.run(command, capture_output=True, text=True)
    if "matches no streams" in done.stderr:
        raise CutError(f"the source has no {'audio' if container == 'flac' else 'video'} track")
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise CutError(f"ffmpeg could not cut the {container}: {lines[0] if lines else done.returncode}")
    return target


def probe_audio(path: Path) -> AudioFacts:
    """The duration, sample rate and channels of a written FLAC file."""
    import soundfile

    info = soundfile.info(str(path))
    return AudioFacts(info.frames / info.samplerate, info.samplerate, info.channels)


def probe_video(path: Path) -> float:
    """The duration of a written mp4's video stream (it must have one)."""
    command = [_binary("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "format=duration",
               "-show_streams", "-of", "json", str(path)]
    done = subprocess.run(command, capture_output=True, text=True)
    facts = json.loads(done.stdout or "{}") if done.returncode == 0 else {}
    if not facts.get("streams"):
        raise CutError("the cut mp4 has no readable video stream")
    return float(facts.get("format", {}).get("duration") or 0.0)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
