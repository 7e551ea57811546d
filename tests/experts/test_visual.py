import datasets
import numpy as np
import pytest
from experts.conftest import run_map

from fusion_datasets.experts.visual import VideoDescriber, VisualConfig, frame_indices, mmss, read_clip
from fusion_datasets.media import MediaError
from fusion_datasets.testing import media


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    """3 s, 5 fps, 64x48 videos with and without an audio track, plus a missing and a corrupt one."""
    folder = tmp_path_factory.mktemp("visual-videos")
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    return {
        "with_audio": str(media.write_video(folder / "a.mp4", 3.0, 5, (64, 48), audio=media.music(3.0, 16000))),
        "silent": str(media.write_video(folder / "b.mp4", 2.0, 5, (64, 48))),
        "missing": str(folder / "missing.mp4"),
        "corrupt": str(corrupt),
    }


def _describer(tiny_zoo, **overrides) -> VideoDescriber:
    return VideoDescriber(model=str(tiny_zoo["qwen2.5-vl"]), **{"max_new_tokens": 8, "num_frames": 4, **overrides})


def _dataset(videos: list[str | None], **columns) -> datasets.Dataset:
    # the audio paths do not exist: the visual expert must never decode audio
    audio = [f"not-decoded-{index}.wav" for index in range(len(videos))]
    return datasets.Dataset.from_dict({"audio": audio, "video": videos, **columns})


def test_frame_indices_stay_inside_the_clip():
    indices = frame_indices(100, 10.0, start=2, end=6, num_frames=4)
    assert indices == [20, 33, 46, 59]
    assert frame_indices(100, 10.0, start=2, end=6, fps=2.0) == [20, 25, 30, 35, 40, 45, 50, 55]
    assert frame_indices(15, 5.0, num_frames=40) == list(range(15))  # no repeats when asking for more
    assert frame_indices(15, 5.0, start=2.0, end=99.0, num_frames=2) == [10, 14]  # end past the video
    with pytest.raises(MediaError, match="holds no frame"):
        frame_indices(15, 5.0, start=10.0, num_frames=2)


def test_mmss():
    assert mmss(75.4) == "01:15"
    assert mmss(0.0) == "00:00"
    assert mmss(3725.0) == "62:05"


def test_exactly_one_of_num_frames_and_fps():
    for bad in ({"fps": 1.0}, {"num_frames": None}, {"num_frames": 0}, {"num_frames": None, "fps": -1.0}):
        with pytest.raises(ValueError, match="num_frames|fps"):
            VisualConfig(**bad)
    with pytest.raises(ValueError, match="num_frames=8 and fps=1.0"):
        VideoDescriber(fps=1.0)
    assert VisualConfig(num_frames=None, fps=1.0).fps == 1.0
    with pytest.raises(ValueError, match="placeholders"):
        VisualConfig(prompt="Describe {video}.")


def test_clip_frames_are_aligned_to_start_and_end(videos, tiny_zoo):
    import decord

    whole = decord.VideoReader(videos["with_audio"]).get_batch(list(range(15))).asnumpy()
    clip = read_clip(videos["with_audio"], start=1.0, end=2.0, num_frames=4)
    assert clip.metadata == {"total_num_frames": 5, "fps": 5.0, "frames_indices": [0, 1, 3, 4]}
    assert np.array_equal(clip.frames, whole[[5, 6, 8, 9]])
    assert clip.times == pytest.approx([0.0, 0.2, 0.6, 0.8]) and clip.duration == pytest.approx(1.0)
    with open(videos["with_audio"], "rb") as file:
        from_bytes = read_clip({"bytes": file.read(), "path": None}, start=1.0, end=2.0, num_frames=4)
    assert np.array_equal(from_bytes.frames, clip.frames)
    prompt = _describer(tiny_zoo).prompt_for(read_clip(videos["silent"], fps=1.0))
    assert "00:00, 00:01" in prompt and "00:02" in prompt  # a 2 s clip at 1 fps, duration 00:02

    ds = _dataset([videos["with_audio"]] * 3, start=[1.0, None, 10.0], end=[2.0, None, None])
    described = run_map(ds, _describer(tiny_zoo, max_pixels=28 * 28))
    assert isinstance(described[0]["video_caption"], str) and described[0]["errors"] == []
    assert isinstance(described[1]["video_caption"], str) and described[1]["errors"] == []
    assert described[2]["video_caption"] is None
    assert [error["stage"] for error in described[2]["errors"]] == ["visual"]
    assert "holds no frame" in described[2]["errors"][0]["message"]


def test_captions_nulls_and_errors(videos, tiny_zoo):
    names = ["with_audio", "none", "silent", "missing", "corrupt"]
    ds = _dataset([videos.get(name) for name in names])
    expert = _describer(tiny_zoo)
    described = run_map(ds, expert, batch_size=8)
    assert described.num_rows == len(names)
    assert described.features["video_caption"] == datasets.Value("string")
    rows = dict(zip(names, described))
    for name in ["with_audio", "silent"]:
        assert isinstance(rows[name]["video_caption"], str) and rows[name]["errors"] == [], name
    assert rows["none"]["video_caption"] is None and rows["none"]["errors"] == []
    for name in ["missing", "corrupt"]:
        assert rows[name]["video_caption"] is None
        assert [error["stage"] for error in rows[name]["errors"]] == ["visual"], name
    assert "not found" in rows["missing"]["errors"][0]["message"]

    again = run_map(ds, expert, batch_size=8)
    assert again["video_caption"] == described["video_caption"]
    one_by_one = run_map(ds, expert, batch_size=1)  # a left-padded batch gives each row its own caption
    assert one_by_one["video_caption"] == described["video_caption"]


def test_no_video_column_loads_nothing():
    ds = datasets.Dataset.from_dict({"audio": ["not-decoded.wav"] * 2})
    described = run_map(ds, VideoDescriber(model="no/such-model"))
    assert described["video_caption"] == [None, None]
    assert described["errors"] == [[], []]


def test_unsupported_model_is_named(videos, tiny_zoo):
    expert = VideoDescriber(model=str(tiny_zoo["ast-audioset"]))
    with pytest.raises(ValueError, match="supported model types: qwen2_5_vl, qwen2_vl"):
        run_map(_dataset([videos["silent"]]), expert)
