import json

import datasets
import pytest

from fusion_datasets.cli import main
from fusion_datasets.config import ConfigError
from fusion_datasets.pipeline.config import build_steps, load_config
from fusion_datasets.testing import media


@pytest.fixture
def clip_folder(tmp_path):
    folder = tmp_path / "clips"
    media.write_audio(folder / "speech.wav", media.speech(2.0, 16000), 16000)
    media.write_audio(folder / "music.wav", media.music(2.0, 22050, channels=2), 22050)
    media.write_video(folder / "music.mp4", 2.0, fps=5, size=(64, 48))
    (folder / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    return folder


def _run(folder, output, *extra):
    argv = ["run", "tiny", "--input", str(folder), "--output", str(output), "--set", "output.shard_size=2",
            "--set", "experts.separation.enabled=false", *extra]
    assert main(argv) == 0


def test_tiny_run_writes_a_loadable_hub_dataset_and_resumes(tmp_path, tiny_zoo, clip_folder):
    output = tmp_path / "out"
    _run(clip_folder, output)
    cues = datasets.load_dataset(str(output), "cues", split="train")
    captions = datasets.load_dataset(str(output), "captions", split="train")
    qa = datasets.load_dataset(str(output), "qa", split="train")
    assert sorted(cues["id"]) == ["corrupt", "music", "speech"]
    rows = {row["id"]: row for row in cues}
    assert rows["music"]["video"].endswith("music.mp4") and rows["speech"]["video"] is None
    assert [error["stage"] for error in rows["corrupt"]["errors"]][0] == "decode"
    assert sorted(captions["id"]) == ["music", "speech"]
    assert set(qa["clip_id"]) == {"music", "speech"}
    stats = json.loads((output / "stats.json").read_text())
    assert (stats["clips"], stats["clips_with_errors"], stats["captions"], stats["qa_pairs"]) == (3, 1, 2, qa.num_rows)
    assert stats["complete"] and stats["shards"] == 2
    assert sum(stats["clap_histogram"]) == stats["clap_scored"] == 2 and stats["filter_removal_rate"] == 0.0
    overrides = [f"input.path={clip_folder}", f"output.path={output}", "output.shard_size=2",
                 "experts.separation.enabled=false"]
    assert load_config(str(output / "config.yaml")) == load_config("tiny", overrides)  # the resolved config

    shard_files = sorted((output / "data").rglob("*.parquet"))
    before = {path: path.stat().st_mtime_ns for path in shard_files}
    _run(clip_folder, output)
    assert {path: path.stat().st_mtime_ns for path in shard_files} == before  # nothing done twice

    media.write_audio(clip_folder / "corrupt.wav", media.noise(2.0, 16000), 16000)  # the failure is fixed
    _run(clip_folder, output, "--retry-errors")
    cues = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")
    assert sorted(cues["id"]) == ["corrupt", "music", "speech"]
    assert all(row["errors"] == [] for row in cues)
    changed = {path.name for path in shard_files if path.stat().st_mtime_ns != before[path]}
    assert changed and all(name.startswith("shard-00000-") for name in changed)  # only the failed row's shard


def test_unknown_stage_options_are_named():
    config = load_config("tiny", ["experts.speech.modle=x"])
    with pytest.raises(ConfigError, match=r"unknown key experts.speech.modle; allowed: .*max_new_tokens"):
        build_steps(config)
