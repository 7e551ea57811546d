"""What a push publishes of the audio (``output.publish_audio``), to the Hub test double :class:`LocalHub`."""

from __future__ import annotations

import shutil

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from fusion_datasets.cli import main
from fusion_datasets.hub.publish import LocalPathsError, check_publishable, local_rows
from fusion_datasets.hub.push import push_folder
from fusion_datasets.media import decode_audio
from fusion_datasets.pipeline.outputs import publish_view
from fusion_datasets.testing import media
from fusion_datasets.testing.hub import LocalHub
from fusion_datasets.testing.runs import TAGGING_ONLY

REPO = "my-org/clips"
YOUTUBE = "dQw4w9WgXcQ_30_40"  # an AudioSet id: <ytid>_<start>_<end>


@pytest.fixture(scope="module")
def run_output(tmp_path_factory, tiny_zoo):
    """A tagger-only run over an AudioSet-style clip and a 5 s recording cut into two segments."""
    folder = tmp_path_factory.mktemp("clips")
    media.write_audio(folder / f"{YOUTUBE}.wav", media.speech(1.5, 16000), 16000)
    media.write_audio(folder / "rec.flac", media.music(5.0, 22050, channels=2), 22050)
    datasets.Dataset.from_dict({
        "id": [YOUTUBE, "rec"], "audio": [str(folder / f"{YOUTUBE}.wav"), str(folder / "rec.flac")],
        "source": ["audioset", "folder"],
    }).to_parquet(str(folder / "clips.parquet"))
    output = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", "tiny", "--input", str(folder / "clips.parquet"), "--output", str(output),
                 "--set", "input.segment_seconds=2.5", *TAGGING_ONLY]) == 0
    return output, folder


@pytest.fixture
def output(run_output, tmp_path):
    """A copy of the run's output and of its clips, which a test may delete."""
    original, clips = run_output
    copy = shutil.copytree(clips, tmp_path / "clips")
    root = shutil.copytree(original, tmp_path / "out")
    for path in root.glob("data/*/*.parquet"):  # the copy names the copied clips
        table = pq.read_table(path)
        column = table.column("audio")
        assert pa.types.is_string(column.type)  # the input's paths, as the run keeps them in cues
        moved = pc.replace_substring(column, str(clips), str(copy))
        pq.write_table(table.set_column(table.column_names.index("audio"), "audio", moved), path)
    return root, copy


def test_path_rows_are_refused_before_anything_is_uploaded(output, tmp_path, monkeypatch, capsys):
    root, _ = output
    hub = LocalHub(tmp_path / "remote")
    with pytest.raises(LocalPathsError, match="name files of this machine.*output.publish_audio.*embed.*source.*none"):
        push_folder(root, REPO, api=hub)
    assert hub.calls == []
    monkeypatch.setattr("huggingface_hub.HfApi", lambda: hub)
    assert main(["push", str(root), REPO]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "--publish-audio" in error and hub.calls == []


def test_embedded_audio_loads_where_the_clips_are_gone(output, tmp_path, monkeypatch):
    root, clips = output
    expected = {}
    for row in datasets.load_dataset(str(root), "cues", split="train"):  # cues name the files, as strings
        expected[row["id"]] = decode_audio(row["audio"], row["start"], row["end"]).samples
    hub = LocalHub(tmp_path / "remote")
    push_folder(publish_view(root, "embed"), REPO, api=hub)
    shutil.rmtree(clips)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cues = datasets.load_dataset(str(hub.remote), "cues", split="train", download_mode="force_redownload")
    assert isinstance(cues.features["audio"], datasets.Audio) and sorted(cues["id"]) == sorted(expected)
    for row in cues:
        samples = row["audio"].get_all_samples().data.numpy()
        assert samples.shape == expected[row["id"]].shape  # a segment is embedded as the segment
        np.testing.assert_allclose(samples, expected[row["id"]], atol=2.0 / 2**16)
    names = {row["id"]: row["audio"]["path"] for row in cues.cast_column("audio", datasets.Audio(decode=False))}
    assert names == {YOUTUBE: f"{YOUTUBE}.wav", "rec@0-2.5": "rec@0-2.5.flac", "rec@2.5-5": "rec@2.5-5.flac"}
    published = [path.read_bytes() for path in hub.remote.rglob("*") if path.is_file()]
    assert not any(str(tmp_path).encode() in data for data in published)  # no path of this machine
    assert "embedded in the Parquet files" in (hub.remote / "README.md").read_text()


def test_source_names_each_clip_publicly(output, tmp_path):
    root, _ = output
    (root / "config.yaml").write_text(yaml.safe_dump({**yaml.safe_load((root / "config.yaml").read_text()),
                                                      "output": {"publish_audio": "source"}}))
    hub = LocalHub(tmp_path / "remote")
    push_folder(publish_view(root), REPO, api=hub)  # the run's output.publish_audio
    cues = datasets.load_dataset(str(hub.remote), "cues", split="train")
    assert "audio" not in cues.column_names
    sources = {row["id"]: (row["source_id"], row["start"], row["end"]) for row in cues}
    assert sources == {YOUTUBE: ("dQw4w9WgXcQ", 30.0, 40.0), "rec@0-2.5": ("rec.flac", 0.0, 2.5),
                       "rec@2.5-5": ("rec.flac", 2.5, 5.0)}
    assert "named by its public source" in (hub.remote / "README.md").read_text()
    assert not any(str(tmp_path).encode() in path.read_bytes() for path in hub.remote.rglob("*") if path.is_file())


def test_an_hf_output_must_say_what_it_publishes(tmp_path, capsys):
    media.write_audio(tmp_path / "clips" / "a.wav", media.speech(1.0, 16000), 16000)
    assert main(["run", "tiny", "--input", str(tmp_path / "clips"), "--output", "hf://datasets/me/clips",
                 *TAGGING_ONLY]) == 2
    assert "output.publish_audio" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["embed", "source", "none"])
def test_no_published_file_names_a_path_of_this_machine_not_even_an_error(tmp_path, tiny_zoo, mode):
    """A clip that does not decode keeps its error, whose message named the file's path: published, its name."""
    folder = tmp_path / "ana's clips"
    media.write_audio(folder / "good.wav", media.speech(1.0, 16000), 16000)
    (folder / "bad.wav").write_bytes(b"not audio at all" * 64)
    output = tmp_path / "out"
    assert main(["run", "tiny", "--input", str(folder), "--output", str(output), *TAGGING_ONLY]) == 0
    local = pq.read_table(output / "data" / "cues", columns=["id", "errors"]).to_pylist()
    assert any(str(folder) in error["message"] for row in local for error in row["errors"])  # as the run wrote it

    hub = LocalHub(tmp_path / "remote")
    push_folder(publish_view(output, mode), REPO, api=hub)
    assert not any(str(tmp_path).encode() in path.read_bytes() for path in hub.remote.rglob("*") if path.is_file())
    cues = datasets.load_dataset(str(hub.remote), "cues", split="train").select_columns(["id", "errors"])
    (error,) = {row["id"]: row for row in cues}["bad"]["errors"]
    assert error["stage"] == "decode" and "bad.wav" in error["message"]


def test_auto_refuses_rows_whose_errors_name_files_of_this_machine(tmp_path):
    """Embedded audio publishes as it is under ``auto``; an error naming a local file does not."""
    error = {"stage": "visual", "message": "cannot open /home/ana/clips/a.mp4: No such file or directory"}
    served = {"stage": "fusion", "message": "HTTP 500 from http://127.0.0.1:8000/v1/chat/completions"}
    rows = {"id": ["a", "b", "c"], "audio": [{"bytes": b"RIFF", "path": "a.wav"}] * 3,
            "errors": [[error], [served], []]}
    pq.write_table(pa.Table.from_pydict(rows), tmp_path / "part.parquet")
    assert local_rows(tmp_path / "part.parquet") == (1, "/home/ana/clips/a.mp4")
    with pytest.raises(LocalPathsError, match="1 rows name files of this machine"):
        check_publishable([tmp_path / "part.parquet"], "auto")
