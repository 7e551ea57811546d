import pytest
import soundfile

from fusion_datasets.demo import CLIP_SECONDS, SAMPLE_RATE, DemoUnavailable, run_demo, write_sample_clips


def test_sample_clips_are_deterministic_and_cover_the_modalities(tmp_path):
    first = write_sample_clips(tmp_path / "a")
    second = write_sample_clips(tmp_path / "b")
    assert [clip.id for clip in first] == ["speech", "music", "street", "silence"]
    assert [clip.video is not None for clip in first] == [False, False, True, False]
    for one, two in zip(first, second):
        assert one.audio.read_bytes() == two.audio.read_bytes()
        info = soundfile.info(one.audio)
        assert (info.samplerate, info.frames) == (SAMPLE_RATE, int(CLIP_SECONDS * SAMPLE_RATE))


def test_demo_offline_fails_fast_naming_tiny_models(tmp_path):
    with pytest.raises(DemoUnavailable, match="--tiny-models"):
        run_demo(tmp_path, tiny_models=False)


def test_demo_runs_the_whole_pipeline_on_the_tiny_zoo(tmp_path, tiny_zoo):
    import datasets

    summary = run_demo(tmp_path, tiny_models=True)
    assert "4 sample clips" in summary and str(tmp_path / "dataset" / "README.md") in summary
    cues = datasets.load_dataset(str(tmp_path / "dataset"), "cues", split="train")
    rows = {row["id"]: row for row in cues}
    assert rows["silence"]["has_speech"] is False and rows["silence"]["asr_text"] == ""
    assert rows["street"]["video_caption"] is not None
    assert all(rows[name]["video_caption"] is None for name in ("speech", "music", "silence"))
    assert all(isinstance(row["sound_caption"], str) and row["audio_tags"] for row in cues)
    captions = datasets.load_dataset(str(tmp_path / "dataset"), "captions", split="train")
    assert captions.num_rows == 4 and all(captions["caption"])
