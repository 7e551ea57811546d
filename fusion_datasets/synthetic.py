"""Synthetic media for the demo, tests and benchmarks: speech, music, noise, silence, videos.

The demo's sample clips are made here, so the demo (on real models too) needs no download and no test kit.

Audio is a float32 array shaped ``(channels, samples)`` in [-1, 1], like ``torchaudio.load``.

Example:
    >>> clip = mix(speech(2.0, 16000), noise(2.0, 16000), gains=[1.0, 0.1])
    >>> clip.shape
    (1, 32000)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

# (F1, F2, F3) in Hz for a few vowels; enough to make the synthetic voice look like speech to a model.
_VOWEL_FORMANTS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))
# C major, A minor, F major, G major as MIDI note numbers.
_CHORDS = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62))


def _num_samples(duration: float, sampling_rate: int) -> int:
    if duration < 0 or sampling_rate <= 0:
        raise ValueError(f"need duration >= 0 and sampling_rate > 0, got {duration} and {sampling_rate}")
    return int(round(duration * sampling_rate))


def _to_channels(mono: np.ndarray, channels: int) -> np.ndarray:
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    return np.repeat(mono[None, :].astype(np.float32), channels, axis=0)


def _normalize(signal: np.ndarray, peak: float = 0.8) -> np.ndarray:
    top = np.abs(signal).max() if signal.size else 0.0
    return signal * (peak / top) if top > 0 else signal


def _fit(signal: np.ndarray, length: int) -> np.ndarray:
    return np.pad(signal, (0, max(0, length - len(signal))))[:length]


def silence(duration: float, sampling_rate: int = 16000, channels: int = 1) -> np.ndarray:
    """Digital silence."""
    return np.zeros((channels, _num_samples(duration, sampling_rate)), dtype=np.float32)


def noise(
    duration: float, sampling_rate: int = 16000, channels: int = 1, color: str = "pink", seed: int = 0
) -> np.ndarray:
    """Environmental-like noise (``white``, ``pink`` or ``brown``) with a slow, wind-like swell."""
    exponents = {"white": 0.0, "pink": 0.5, "brown": 1.0}
    if color not in exponents:
        raise ValueError(f"color must be one of {sorted(exponents)}, got {color!r}")
    n = _num_samples(duration, sampling_rate)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, d=1.0 / sampling_rate)
    spectrum[1:] /= freqs[1:] ** exponents[color]
    shaped = np.fft.irfft(spectrum, n=n)
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * np.arange(n) / sampling_rate + rng.uniform(0, np.pi))
    return _to_channels(_normalize(shaped * swell, 0.5), channels)


def music(
    duration: float, sampling_rate: int = 16000, channels: int = 1, bpm: float = 120.0, seed: int = 0
) -> np.ndarray:
    """Music-like audio: a chord progression of harmonic tones over a kick-and-hat beat at ``bpm``."""
    n = _num_samples(duration, sampling_rate)
    t = np.arange(n) / sampling_rate
    beat = 60.0 / bpm
    out = np.zeros(n)
    for bar_start in np.arange(0.0, duration, 4 * beat):
        chord = _CHORDS[int(bar_start / (4 * beat)) % len(_CHORDS)]
        mask = (t >= bar_start) & (t < bar_start + 4 * beat)
        local = t[mask] - bar_start
        for note in chord:
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            for harmonic in range(1, 5):
                out[mask] += np.sin(2 * np.pi * f0 * harmonic * local) * np.exp(-local * 0.8) / harmonic**1.5
    rng = np.random.default_rng(seed)
    for hit in np.arange(0.0, duration, beat):
        start = int(hit * sampling_rate)
        length = min(int(0.15 * sampling_rate), n - start)
        local = np.arange(length) / sampling_rate
        out[start : start + length] += 1.5 * np.sin(2 * np.pi * 55 * local) * np.exp(-local * 30)
        off = start + int(beat / 2 * sampling_rate)
        hat = min(int(0.05 * sampling_rate), max(0, n - off))
        out[off : off + hat] += 0.3 * rng.standard_normal(hat) * np.exp(-np.arange(hat) / sampling_rate * 80)
    return _to_channels(_normalize(out), channels)


def _espeak(text: str, sampling_rate: int) -> np.ndarray | None:
    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    import soundfile
    import torch
    import torchaudio

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([binary, "-w", str(wav), text], check=True, capture_output=True)
        data, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    mono = torch.from_numpy(data.mean(axis=1))
    return torchaudio.functional.resample(mono, rate, sampling_rate).numpy()


def _formant_voice(duration: float, sampling_rate: int, seed: int) -> np.ndarray:
    """A formant-like synthetic voice: glottal pulses through vowel resonators, in syllables and words."""
    from scipy.signal import lfilter

    n = _num_samples(duration, sampling_rate)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sampling_rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    pulses = (np.diff(np.floor(np.cumsum(f0) / sampling_rate), prepend=0) > 0).astype(float)
    out = np.zeros(n)
    syllable = int(0.18 * sampling_rate)
    for index, start in enumerate(range(0, n, syllable)):
        if index % 4 == 3:  # a pause between words
            continue
        segment = pulses[start : start + syllable]
        voiced = segment
        for formant in _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))]:
            radius = np.exp(-np.pi * 80 / sampling_rate)
            theta = 2 * np.pi * formant / sampling_rate
            voiced = voiced + lfilter([1.0], [1.0, -2 * radius * np.cos(theta), radius**2], segment)
        out[start : start + len(segment)] = voiced * np.hanning(len(segment))
    return _normalize(out)


def speech(
    duration: float,
    sampling_rate: int = 16000,
    channels: int = 1,
    text: str = "The quick brown fox jumps over the lazy dog.",
    seed: int = 0,
) -> np.ndarray:
    """Speech of ``text`` from espeak-ng when installed, else a formant-like synthetic voice.

    The result is padded with silence or cut to ``duration``.
    """
    n = _num_samples(duration, sampling_rate)
    voice = _espeak(text, sampling_rate)
    if voice is None:
        voice = _formant_voice(duration, sampling_rate, seed)
    return _to_channels(_normalize(_fit(voice, n)), channels)


def mix(*signals: np.ndarray, gains: list[float] | None = None) -> np.ndarray:
    """Sum signals of the same shape, each scaled by its gain, and keep the result in [-1, 1]."""
    if not signals:
        raise ValueError("mix needs at least one signal")
    shapes = {signal.shape for signal in signals}
    if len(shapes) != 1:
        raise ValueError(f"signals must share one shape, got {sorted(shapes)}")
    gains = gains or [1.0] * len(signals)
    if len(gains) != len(signals):
        raise ValueError(f"got {len(gains)} gains for {len(signals)} signals")
    total = sum(gain * signal for gain, signal in zip(gains, signals))
    top = np.abs(total).max()
    return (total / top * 0.9 if top > 1.0 else total).astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, sampling_rate: int) -> Path:
    """Write ``(channels, samples)`` audio to ``path``; the format follows the suffix (wav, flac, ogg, mp3)."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.asarray(audio, dtype=np.float32).T, sampling_rate)
    return path


def write_video(
    path: str | Path,
    duration: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (96, 64),
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
) -> Path:
    """Write an mp4 of moving test frames with ffmpeg, with ``audio`` as its AAC track or with no audio track."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("write_video needs the ffmpeg binary (apt-get install ffmpeg)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with tempfile.TemporaryDirectory() as tmp:
        command = [ffmpeg, "-y", "-loglevel", "error", "-f", "lavfi",
                   "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}"]
        if audio is not None:
            command += ["-i", str(write_audio(Path(tmp) / "track.wav", audio, sampling_rate)), "-c:a", "aac"]
        else:
            command += ["-an"]
        command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-t", str(duration), str(path)]
        subprocess.run(command, check=True, capture_output=True)
    return path
