"""The Ray Data executor on local Ray instances (2 CPUs): the same output as the local executor, reruns
across engines, a two-node cluster on 127.0.0.1, an actor that dies, a driver that is killed."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import psutil
import pytest
import ray
from ray.cluster_utils import Cluster

from fusion_datasets.chat.backends import ServerBackendConfig
from fusion_datasets.cli import main
from fusion_datasets.experts import ASTAudioTagger
from fusion_datasets.experts.chain import COUNTERS
from fusion_datasets.llm.fusion import CaptionFuser
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.pipeline.executors.ray import PCM, STAGES, PassActor, RayExecutor, decode_ahead, import_ray
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.work import PartWork, Work, with_plan_columns
from fusion_datasets.testing import media
from fusion_datasets.testing.dummies import DiesOnce
from fusion_datasets.testing.stub_chat import StubChatServer
from fusion_datasets.testing.zoo.fixed_answer import FUSION_ANSWER

FAST = ("--set", "experts.separation.enabled=false", "--set", "experts.visual.enabled=false")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, tiny_zoo) -> Path:
    tiny_zoo.build_all()  # before any worker process needs it
    folder = tmp_path_factory.mktemp("ray-clips")
    for index in range(4):
        media.write_audio(folder / f"noise{index}.wav", media.noise(1.0, 16000, seed=index), 16000)
    media.write_audio(folder / "speech.wav", media.speech(1.5, 16000), 16000)
    media.write_audio(folder / "music.wav", media.music(1.5, 22050, channels=2), 22050)
    media.write_video(folder / "music.mp4", 1.5, fps=5, size=(64, 48))
    (folder / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    return folder


@pytest.fixture(autouse=True)
def _no_ray_left_running():
    yield
    ray.shutdown()


def run(clips: Path, output: Path, *extra: str) -> int:
    return main(["run", "tiny", "--input", str(clips), "--output", str(output), "--set", "output.shard_size=3",
                 *FAST, *extra])


def cues_by_id(output: Path) -> dict[str, dict]:
    cues = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")
    assert len(set(cues["id"])) == cues.num_rows  # no clip twice
    return {row["id"]: row for row in cues}


def assert_same_values(left: Any, right: Any) -> None:
    """Equal, floats to float32 precision (a clip's scores move in the last bits with its batch)."""
    if isinstance(left, float) and isinstance(right, float):
        assert math.isclose(left, right, rel_tol=1e-5, abs_tol=1e-6)
    elif isinstance(left, dict) and isinstance(right, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same_values(left[key], right[key])
    elif isinstance(left, list) and isinstance(right, list):
        assert len(left) == len(right)
        for a, b in zip(left, right):
            assert_same_values(a, b)
    else:
        assert left == right


def test_ray_gives_the_local_executors_dataset_and_either_engine_resumes_the_other(clips, tmp_path, capsys):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert run(clips, local) == 0
    assert run(clips, on_ray, "--engine", "ray") == 0
    expected, got = cues_by_id(local), cues_by_id(on_ray)
    assert sorted(got) == sorted(clip.stem for clip in clips.iterdir() if clip.suffix == ".wav")
    for clip, row in expected.items():
        assert list(got[clip]) == list(row)  # the same columns, in order
        for column in row:
            assert_same_values(got[clip][column], row[column])
    stats = json.loads((on_ray / "stats.json").read_text())
    assert stats["complete"] and stats["stages"]["fusion"]["rows"] == len(expected)
    assert stats["errors_by_stage"]["decode"] == 1  # the corrupt clip: a recorded error, not a lost row
    capsys.readouterr()

    assert run(clips, on_ray) == 0  # the local executor finds nothing left to do
    assert "0 parts written" in capsys.readouterr().out
    assert run(clips, local, "--engine", "ray", "--set", "fusion.max_new_tokens=97") == 0  # Ray redoes fusion
    redone = json.loads((local / "stats.json").read_text())["stages"]
    assert redone["fusion"]["rows"] == 2 * len(expected) and redone["speech"]["rows"] == len(expected)
    assert sorted(cues_by_id(local)) == sorted(expected)


def test_a_two_node_cluster_runs_every_clip_once(clips, tmp_path):
    # two CPUs a node: the plan's four pools of actors (experts, fusion, CLAP filter, QA) each hold one
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    try:
        output = tmp_path / "out"
        # the head by loopback: the run checks that the address answers, and tests reach loopback only
        head = "127.0.0.1:" + cluster.address.rsplit(":", 1)[1]
        assert run(clips, output, "--engine", "ray", "--ray-address", head,
                   "--set", "ray.resources.tagging.actors=[1, 2]") == 0
        assert len(ray.nodes()) == 2
        assert len(cues_by_id(output)) == 7
        assert json.loads((output / "stats.json").read_text())["complete"]
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_an_actor_that_dies_is_restarted_and_no_row_is_lost(tmp_path):
    ray.init(num_cpus=2, include_dashboard=False)
    ids = [f"clip{index}" for index in range(10)]
    rows = datasets.Dataset.from_dict({"id": ids, "audio": [None] * len(ids)})
    plan = Plan((DiesOnce(marker=str(tmp_path / "died")),))
    config = load_config("tiny", ["output.batch_size=4"])
    item = PartWork("part-test-0000", tuple(ids), (Work(("dies_once",), tuple(range(len(ids)))),))
    ((done, cues, counters),) = list(RayExecutor(plan, config).run([(item, rows)]))
    assert (tmp_path / "died").exists()  # it did die once
    assert done is item and cues["id"] == ids and cues["survived"] == [True] * len(ids)
    assert counters["dies_once"]["rows"] == len(ids)


def test_a_served_llm_stage_keeps_max_concurrency_in_flight_across_its_batches(tmp_path):
    """Batches of 4 rows, 8 requests allowed: only overlapping calls of the actor reach 8 in flight."""
    ray.init(num_cpus=2, include_dashboard=False)
    ids = [f"clip{index}" for index in range(48)]
    rows = datasets.Dataset.from_dict({"id": ids, "audio": [None] * len(ids),
                                       "sound_caption": [f"A dog barks, take {i}." for i in range(len(ids))]})
    with StubChatServer(lambda request: FUSION_ANSWER, latency=0.2) as server:
        backend = ServerBackendConfig(model="stub", base_urls=(server.base_url,), max_concurrency=8,
                                token_env=None)
        config = load_config("tiny", ["ray.resources.fusion.batch_size=4"])
        item = PartWork("part-test-0000", tuple(ids), (Work(("fusion",), tuple(range(len(ids)))),))
        ((_, cues, counters),) = list(RayExecutor(Plan((CaptionFuser(backend=backend),)), config).run([(item, rows)]))
        assert server.requests == len(ids) and server.peak_in_flight == 8
    assert all(cues["caption"]) and counters["fusion"]["errors"] == 0


def test_media_passes_decode_ahead_and_their_actors_use_those_samples(tiny_zoo, tmp_path):
    """The decode task's samples (and warnings) are what the experts get; a clip it cannot decode, or one
    over input.max_seconds, is left to the pass, which records its error as the local executor does."""
    wav = media.write_audio(tmp_path / "good.wav", media.noise(1.0, 16000, seed=0), 16000).read_bytes()
    long = media.write_audio(tmp_path / "long.wav", media.noise(6.0, 16000, seed=1), 16000).read_bytes()
    cut = media.write_truncated_mp3(tmp_path / "cut.mp3", seconds=3.0).read_bytes()
    tagger = ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]))
    rows = datasets.Dataset.from_dict({"id": ["good", "corrupt", "long", "cut"],
                                       "audio": [wav, b"not audio" * 64, long, cut]})
    rows = (with_plan_columns(Plan((tagger,)), rows)
            .add_column(STAGES, [json.dumps(["tagging"])] * 4)
            .add_column(COUNTERS, [None] * 4, feature=datasets.Value("string")))
    ahead = decode_ahead(rows.with_format("arrow")[:], readers={"audio": frozenset({"tagging"})}, max_seconds=4.0)
    decoded = ahead[PCM + "audio"].to_pylist()
    assert decoded[1] is None and decoded[2] is None and "truncated" in decoded[3]["warning"]
    # the actor tags from the decoded samples: the audio cell itself is no longer read
    swapped = ahead.set_column(ahead.column_names.index("audio"), "audio", ahead["audio"].take([1, 1, 2, 1]))
    good, corrupt, too_long, truncated = PassActor([tagger], rows.features, max_seconds=4.0)(swapped).to_pylist()
    assert good["audio_tags"] and good["errors"] == []
    assert corrupt["audio_tags"] is None and [error["stage"] for error in corrupt["errors"]] == ["decode"]
    assert too_long["audio_tags"] is None and "over input.max_seconds=4" in too_long["errors"][0]["message"]
    assert truncated["audio_tags"] and [error["stage"] for error in truncated["errors"]] == ["decode_warning"]


@pytest.mark.slow
def test_a_killed_driver_is_resumed_by_a_rerun(clips, tmp_path):
    output = tmp_path / "out"
    command = [sys.executable, "-m", "fusion_datasets.cli", "run", "tiny", "--input", str(clips), "--output",
               str(output), "--set", "output.shard_size=2", *FAST, "--engine", "ray"]
    with (tmp_path / "killed.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while process.poll() is None and not list((output / "data" / "cues").glob("part-*.parquet")):
            time.sleep(0.05)
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert run(clips, output, "--engine", "ray", "--set", "output.shard_size=2") == 0
    assert len(cues_by_id(output)) == 7
    assert json.loads((output / "stats.json").read_text())["complete"]


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, tmp_path, capsys, clips):
    """``sys.modules["ray"] = None`` stands in for an environment without the extra (Ray is installed here)."""
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(Exception, match=r'pip install "fusion-datasets\[ray\]"'):
        import_ray()
    assert run(clips, tmp_path / "out", "--engine", "ray") == 2
    err = capsys.readouterr().err
    assert 'needs Ray Data, which is not installed: pip install "fusion-datasets[ray]"' in err
    assert len(err.strip().splitlines()) == 1


def test_a_cluster_that_cannot_be_reached_fails_in_bounded_time_with_one_line(clips, tmp_path, capsys):
    with socket.socket() as closed:  # a port nothing listens on (bound, never listening)
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        started = time.monotonic()
        assert run(clips, tmp_path / "out", "--engine", "ray", "--ray-address", address,
                   "--set", "ray.connect_timeout=2") == 2
        assert time.monotonic() - started < 60
    error = capsys.readouterr().err
    assert f"the Ray cluster at {address} cannot be reached" in error and "ray.connect_timeout" in error
    assert "Traceback" not in error and not ray.is_initialized()


def test_a_local_ray_that_the_run_started_is_shut_down_with_it(clips, tmp_path):
    assert run(clips, tmp_path / "out", "--engine", "ray") == 0
    assert not ray.is_initialized()
    deadline = time.monotonic() + 30
    while left := _ray_processes():
        assert time.monotonic() < deadline, f"Ray processes left running: {left}"
        time.sleep(0.5)


def _ray_processes() -> list[str]:
    """The command lines of this process's live descendants that are Ray's (raylet, GCS, workers, agents)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if child.status() != psutil.STATUS_ZOMBIE and "ray" in command:
                found.append(command[:120])
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.slow
def test_a_local_ray_left_by_a_killed_driver_is_ended_by_the_next_run(clips, tmp_path, caplog):
    output = tmp_path / "out"
    listed = output / ".cache" / "ray-processes.json"
    command = [sys.executable, "-m", "fusion_datasets.cli", "run", "tiny", "--input", str(clips), "--output",
               str(output), "--set", "output.shard_size=2", *FAST, "--engine", "ray"]
    with (tmp_path / "killed.log").open("w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        while driver.poll() is None and not listed.is_file():
            time.sleep(0.05)
        assert driver.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        driver.kill()  # the driver alone, as the OOM killer or `kill -9 PID` does
        driver.wait()
    left = [psutil.Process(entry["pid"]) for entry in json.loads(listed.read_text())
            if psutil.pid_exists(entry["pid"])]
    assert left, "a killed driver's Ray left nothing running: nothing to test"
    assert run(clips, output, "--engine", "ray", "--set", "output.shard_size=2") == 0
    assert "processes of a local Ray left by a killed run" in caplog.text
    assert not [process for process in left if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]
    assert not listed.exists() and len(cues_by_id(output)) == 7
