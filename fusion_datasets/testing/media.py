"""The test kit's media: the synthetic clips of :mod:`fusion_datasets.synthetic`, and the awkward inputs a
pipeline must survive (a truncated mp3, corrupt, empty, NaN, surround and long files).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from fusion_datasets.synthetic import mix, music, noise, silence, speech, write_audio, write_video

__all__ = ["mix", "music", "noise", "silence", "speech", "write_audio", "write_bad_audio_files", "write_truncated_mp3",
           "write_video"]


def write_truncated_mp3(path: str | Path, seconds: float = 5.0) -> Path:
    """An mp3 of ``seconds`` of noise cut to half its bytes: its header (LAME's frame count) claims them all."""
    path = Path(path)
    wav = write_audio(path.with_suffix(".wav"), noise(seconds, 44100), 44100)
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), "-b:a", "128k", str(path)], check=True)
    wav.unlink()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_bad_audio_files(folder: str | Path, long_seconds: float = 65.0) -> dict[str, str]:
    """Write the awkward inputs a pipeline must survive; returns kind -> path.

    Kinds: ``corrupt`` (random bytes named .wav), ``truncated`` (a wav cut after its header),
    ``empty`` (zero frames), ``nan`` (NaN samples), ``surround`` (6 channels at 48 kHz), ``long``
    (``long_seconds`` of speech over noise), ``missing`` (a path that does not exist).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (folder / "corrupt.wav").write_bytes(rng.bytes(4096))
    full = write_audio(folder / "full.wav", speech(1.0, 16000), 16000).read_bytes()
    (folder / "truncated.wav").write_bytes(full[:100])
    (folder / "full.wav").unlink()
    write_audio(folder / "empty.wav", np.zeros((1, 0), dtype=np.float32), 16000)
    import soundfile

    soundfile.write(folder / "nan.wav", np.full((8000, 1), np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    write_audio(folder / "surround.wav", mix(noise(2.0, 48000, 6), music(2.0, 48000, 6)), 48000)
    long_clip = mix(speech(long_seconds, 16000), noise(long_seconds, 16000), gains=[1.0, 0.2])
    write_audio(folder / "long.flac", long_clip, 16000)
    kinds = ("corrupt", "truncated", "empty", "nan", "surround")
    paths = {kind: str(folder / f"{kind}.wav") for kind in kinds}
    return {**paths, "long": str(folder / "long.flac"), "missing": str(folder / "missing.wav")}
