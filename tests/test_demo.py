import pytest
import soundfile

from fusion_datasets.demo import CLIP_SECONDS, SAMPLE_RATE, run_demo, write_sample_clips


def test_sample_clips_are_deterministic_and_cover_the_modalities(tmp_path):
    first = write_sample_clips(tmp_path / "a")
    second = write_sample_clips(tmp_path / "b")
    assert [clip.id for clip in first] == ["speech", "music", "street", "silence"]
    assert [clip.video is not None for clip in first] == [False, False, True, False]
    for one, two in zip(first, second):
        assert one.audio.read_bytes() == two.audio.read_bytes()
        info = soundfile.info(one.audio)
        assert (info.samplerate, info.frames) == (SAMPLE_RATE, int(CLIP_SECONDS * SAMPLE_RATE))


def test_demo_with_real_models_asks_for_tiny_models_until_the_runner_exists(tmp_path):
    with pytest.raises(NotImplementedError, match="--tiny-models"):
        run_demo(tmp_path, tiny_models=False)
