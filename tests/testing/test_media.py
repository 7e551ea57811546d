import subprocess

import decord
import numpy as np
import pytest
import soundfile

from fusion_datasets import synthetic
from fusion_datasets.testing import media


@pytest.mark.parametrize("make", [media.speech, media.music, media.noise, media.silence])
@pytest.mark.parametrize(("duration", "rate", "channels"), [(1.5, 16000, 1), (0.5, 44100, 2), (2.0, 8000, 3)])
def test_audio_has_requested_duration_rate_and_channels(make, duration, rate, channels):
    audio = make(duration, rate, channels)
    assert audio.shape == (channels, round(duration * rate))
    assert audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0


def test_speech_is_speech_like():
    voice = media.speech(2.0, 16000)[0]
    # a voice is neither silent nor a steady tone: its short-time energy varies a lot
    frames = voice[: len(voice) // 400 * 400].reshape(-1, 400)
    energy = (frames**2).mean(axis=1)
    assert energy.max() > 0.001
    assert energy.std() > 0.2 * energy.mean()


def test_formant_voice_is_used_without_espeak(monkeypatch):
    monkeypatch.setattr(synthetic.shutil, "which", lambda name: None)  # where the voice is made
    voice = media.speech(1.0, 16000)
    assert voice.shape == (1, 16000)
    assert np.abs(voice).max() == pytest.approx(0.8, abs=1e-3)


def test_music_has_a_beat_at_the_requested_tempo():
    rate, bpm = 8000, 120
    signal = media.music(4.0, rate, bpm=bpm)[0]
    envelope = np.abs(signal).reshape(-1, 80).mean(axis=1)  # 100 envelope frames per second
    onset = np.maximum(np.diff(envelope), 0)
    autocorrelation = np.correlate(onset, onset, mode="full")[len(onset) - 1 :]
    lag = np.argmax(autocorrelation[20:80]) + 20  # search 0.2 s to 0.8 s
    assert lag == pytest.approx(100 * 60 / bpm, abs=2)


def test_silence_is_silent_and_noise_is_not():
    assert not media.silence(1.0).any()
    assert media.noise(1.0).std() > 0.05


def test_noise_colors_differ_in_spectral_slope():
    def low_to_high_ratio(color):
        spectrum = np.abs(np.fft.rfft(media.noise(2.0, 16000, color=color)[0]))
        return spectrum[:500].mean() / spectrum[-500:].mean()

    assert low_to_high_ratio("brown") > low_to_high_ratio("pink") > low_to_high_ratio("white")
    with pytest.raises(ValueError, match="color"):
        media.noise(1.0, color="purple")


def test_mix_scales_and_bounds():
    a, b = media.music(1.0, 8000), media.noise(1.0, 8000)
    mixed = media.mix(a, b, gains=[1.0, 0.0])
    np.testing.assert_allclose(mixed, a, atol=1e-6)
    assert np.abs(media.mix(a, a, a)).max() <= 1.0
    with pytest.raises(ValueError, match="shape"):
        media.mix(a, media.noise(2.0, 8000))


def test_write_audio_round_trips(tmp_path):
    audio = media.music(1.0, 22050, channels=2)
    path = media.write_audio(tmp_path / "clip.flac", audio, 22050)
    data, rate = soundfile.read(path, always_2d=True)
    assert rate == 22050
    assert data.shape == (22050, 2)


def _audio_streams(path):
    probe = ["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=sample_rate,channels",
             "-of", "csv=p=0", str(path)]
    return subprocess.run(probe, check=True, capture_output=True, text=True).stdout.split()


def test_video_with_audio_track(tmp_path):
    audio = media.speech(2.0, 16000, channels=2)
    path = media.write_video(tmp_path / "clip.mp4", duration=2.0, fps=8, size=(64, 48), audio=audio)
    reader = decord.VideoReader(str(path))
    assert len(reader) == 16
    frames = reader.get_batch([0, 15]).asnumpy()
    assert frames.shape == (2, 48, 64, 3)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 1  # the frames move
    assert _audio_streams(path) == ["16000,2"]


def test_video_without_audio_track(tmp_path):
    path = media.write_video(tmp_path / "mute.mp4", duration=1.0, fps=5)
    assert len(decord.VideoReader(str(path))) == 5
    assert _audio_streams(path) == []
