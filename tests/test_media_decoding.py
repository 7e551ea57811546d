import numpy as np
import pytest
import soundfile

from fusion_datasets.media import MediaBatch, MediaError, Waveform, decode_audio, resample
from fusion_datasets.testing import media


@pytest.fixture
def clip_path(tmp_path):
    return str(media.write_audio(tmp_path / "clip.wav", media.music(2.0, 22050, channels=2), 22050))


def test_decode_accepts_every_form_of_an_audio_cell(clip_path):
    from torchcodec.decoders import AudioDecoder

    with open(clip_path, "rb") as file:
        raw = file.read()
    forms = [clip_path, {"path": clip_path, "bytes": None}, {"bytes": raw, "path": None}, AudioDecoder(clip_path)]
    decoded = [decode_audio(form) for form in forms]
    for waveform in decoded:
        assert waveform.sampling_rate == 22050
        np.testing.assert_allclose(waveform.samples, decoded[0].samples)
    array = decode_audio({"array": decoded[0].samples[0], "sampling_rate": 22050})
    assert array.samples.shape == (1, 44100)


def test_decode_reads_the_audio_track_of_a_video(tmp_path):
    path = media.write_video(tmp_path / "clip.mp4", duration=2.0, audio=media.speech(2.0, 16000))
    assert decode_audio(str(path)).duration == pytest.approx(2.0, abs=0.1)


def test_decode_honours_start_and_end(clip_path):
    assert decode_audio(clip_path, start=0.5, end=1.5).duration == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: None, "no audio"),
        (lambda tmp: str(tmp / "missing.wav"), "cannot decode"),
        (lambda tmp: _write(tmp / "junk.wav", np.random.default_rng(0).bytes(4000)), "cannot decode"),
        (lambda tmp: _write_wav(tmp / "empty.wav", np.zeros((0, 1))), "empty"),
        (lambda tmp: _write_wav(tmp / "nan.wav", np.full((800, 1), np.nan)), "NaN"),
        (lambda tmp: str(media.write_video(tmp / "mute.mp4", duration=1.0, fps=5)), "no audio track"),
    ],
)
def test_bad_audio_raises_media_error(tmp_path, make, message):
    with pytest.raises(MediaError, match=message):
        decode_audio(make(tmp_path))


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _write_wav(path, samples):
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    return str(path)


def test_resample_downmixes_and_changes_rate():
    waveform = Waveform(media.noise(1.0, 48000, channels=6), 48000)
    assert resample(waveform, 16000).shape == (1, 16000)
    assert resample(waveform, 44100, channels=2).shape == (2, 44100)
    assert resample(waveform, 48000, channels=None).shape == (6, 48000)


def test_media_batch_decodes_once_per_clip_and_resamples_once_per_rate(clip_path, tmp_path, monkeypatch):
    import fusion_datasets.media as module

    calls = {"decode": 0, "resample": 0}
    real_decode, real_resample = module.decode_audio, module.resample

    def counting_decode(*args, **kwargs):
        calls["decode"] += 1
        return real_decode(*args, **kwargs)

    def counting_resample(*args, **kwargs):
        calls["resample"] += 1
        return real_resample(*args, **kwargs)

    monkeypatch.setattr(module, "decode_audio", counting_decode)
    monkeypatch.setattr(module, "resample", counting_resample)
    batch = MediaBatch({"audio": [clip_path, str(tmp_path / "missing.wav")], "errors": [[], None]})
    for _ in range(3):
        first = batch.audio(16000)
        batch.audio(44100, channels=2)
    assert calls == {"decode": 2, "resample": 2}  # one decode per clip, one resample per rate for the good clip
    assert first[1] is None
    assert batch.errors[0] == []
    assert [error["stage"] for error in batch.errors[1]] == ["decode"]


def test_tracks_fall_back_to_the_mix_per_row(clip_path):
    batch = MediaBatch({"audio": [clip_path, clip_path]})
    vocals = Waveform(np.zeros((1, 16000), dtype=np.float32), 16000)
    batch.set_track("vocals", [vocals, None])
    own, fallback = batch.audio(16000, track="vocals")
    assert not own.any()
    np.testing.assert_allclose(fallback, batch.audio(16000)[1])
    with pytest.raises(ValueError, match="rows"):
        batch.set_track("vocals", [vocals])


def test_tracks_are_read_from_batch_columns(clip_path):
    column = [{"array": np.ones(8000, dtype=np.float32), "sampling_rate": 8000}]
    batch = MediaBatch({"audio": [clip_path], "vocals": column})
    assert batch.audio(8000, track="vocals")[0].shape == (1, 8000)
