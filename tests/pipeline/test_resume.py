"""Resume after SIGKILL, several processes, ``num_proc``: the runner run as ``fusion-datasets run``.

The subprocesses inherit the test session's environment (tests/conftest.py: caches in a temporary folder,
offline, the tiny zoo in ``$FUSION_DATASETS_TINY_ZOO``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest

from fusion_datasets.cli import main
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.runtime import ProcessRank, process_rank
from fusion_datasets.testing import media

IDS = ["corrupt", "mix", "music", "noise", "silence", "speech_a", "speech_b", "video_only"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, tiny_zoo) -> Path:
    """Eight clips (four shards of two): speech, music with its video, a video alone, a corrupt file."""
    load_config("tiny")  # builds the zoo now, not concurrently in the processes under test
    folder = tmp_path_factory.mktemp("clips")
    media.write_audio(folder / "speech_a.wav", media.speech(2.0, 16000), 16000)
    media.write_audio(folder / "speech_b.wav", media.speech(1.5, 16000, text="Rain on a tin roof."), 16000)
    media.write_audio(folder / "music.wav", media.music(2.0, 22050, channels=2), 22050)
    media.write_video(folder / "music.mp4", 2.0, fps=5, size=(64, 48))
    media.write_video(folder / "video_only.mp4", 2.0, fps=5, size=(64, 48), audio=media.music(2.0, 16000))
    media.write_audio(folder / "noise.wav", media.noise(2.0, 16000), 16000)
    media.write_audio(folder / "silence.wav", media.silence(1.0, 16000), 16000)
    mixed = media.mix(media.speech(2.0, 16000), media.noise(2.0, 16000))
    media.write_audio(folder / "mix.flac", mixed, 16000)
    (folder / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    return folder


def _command(clips: Path, output: Path, *extra: str, launcher: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, *launcher, "-m", "fusion_datasets.cli", "run", "tiny", "--input", str(clips),
            "--output", str(output), "--set", "output.shard_size=2",
            "--set", "experts.separation.enabled=false", *extra]


def _run(command: list[str], log: Path) -> str:
    with log.open("w") as stream:
        finished = subprocess.run(command, env=os.environ, stdout=stream, stderr=subprocess.STDOUT)
    assert finished.returncode == 0, log.read_text()[-3000:]
    return log.read_text()


def _kill_when(command: list[str], log: Path, ready: Callable[[], bool], poll: float) -> None:
    """Start ``command``, SIGKILL it (and the workers it forked) once ``ready()``; fail if it ends first."""
    with log.open("w") as stream:
        process = subprocess.Popen(command, env=os.environ, stdout=stream, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        while process.poll() is None and not ready():
            time.sleep(poll)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"ended before the kill point:\n{log.read_text()[-3000:]}"


def _captions_by_id(output: Path) -> dict[str, str]:
    captions = datasets.load_dataset(str(output), "captions", split="train", download_mode="force_redownload")
    assert len(set(captions["id"])) == captions.num_rows  # no clip twice
    return dict(zip(captions["id"], captions["caption"]))


def _assert_complete(output: Path) -> dict[str, str]:
    """The dataset in ``output`` has every input clip once, complete stats, and no half-written file."""
    cues = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")
    assert sorted(cues["id"]) == IDS  # every clip, none twice
    captions = _captions_by_id(output)
    qa = datasets.load_dataset(str(output), "qa", split="train", download_mode="force_redownload")
    assert set(qa["clip_id"]) <= set(captions)
    stats = json.loads((output / "stats.json").read_text())
    assert stats["complete"] and stats["shards"] == 4
    assert (stats["clips"], stats["captions"], stats["qa_pairs"]) == (len(IDS), len(captions), qa.num_rows)
    assert stats["errors_by_stage"].get("decode", 0) >= 1  # the corrupt clip, recorded, not fatal
    assert not [*(output / "data").rglob("*.tmp"), *(output / "stats").rglob("*.tmp")]
    return captions


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory) -> dict[str, str]:
    """Captions per id of one uninterrupted single-process run."""
    output = tmp_path_factory.mktemp("reference") / "out"
    _run(_command(clips, output), output.parent / "run.log")
    return _assert_complete(output)


def _shard_files(output: Path, index: int) -> list[Path]:
    return sorted((output / "data").glob(f"*/shard-{index:05d}-of-*.parquet"))


def _first_shard_done(output: Path) -> bool:
    return bool(list((output / "data" / "cues").glob("shard-00000-of-*.parquet")))


def _writing_a_shard(output: Path) -> bool:
    """A shard is being written: a temporary file exists, or a shard has files but no ``cues`` yet."""
    data = output / "data"
    if list(data.glob("*/.*.tmp")):
        return True
    started = {path.name for path in data.glob("*/shard-*.parquet") if path.parent.name != "cues"}
    return bool(started - {path.name for path in data.glob("cues/shard-*.parquet")})


KILL_POINTS = {
    "right_after_start": (lambda output: (output / "config.yaml").exists(), 0.01),
    "during_a_step": (_first_shard_done, 0.05),  # shard 0 is written: the process maps shard 1
    "while_writing_a_shard": (_writing_a_shard, 0.001),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_rerun_gives_every_clip_once(point, clips, reference, tmp_path):
    output = tmp_path / "out"
    ready, poll = KILL_POINTS[point]
    _kill_when(_command(clips, output), tmp_path / "killed.log", lambda: ready(output), poll)
    kept = {path: path.stat().st_mtime_ns for path in _shard_files(output, 0) if _first_shard_done(output)}

    _run(_command(clips, output), tmp_path / "rerun.log")
    assert _assert_complete(output) == reference  # the same dataset as a run never killed
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # a finished shard is not redone


@pytest.mark.slow
def test_two_processes_split_the_shards_by_rank(clips, reference, tmp_path):
    """Two processes through ``torchrun`` (``accelerate launch --cpu`` starts just one on a CPU machine)."""
    output = tmp_path / "out"
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    log = _run(_command(clips, output, launcher=launcher), tmp_path / "torchrun.log")
    took = dict(re.findall(r"rank (\d) of 2 took shards \[([\d, ]*)\]", log))
    assert took == {"0": "0, 2", "1": "1, 3"}
    assert _assert_complete(output).keys() == reference.keys()


@pytest.mark.slow
def test_num_proc_2_gives_the_same_dataset(clips, reference, tmp_path):
    output = tmp_path / "out"
    _run(_command(clips, output, "--set", "output.num_proc=2"), tmp_path / "run.log")
    assert _assert_complete(output) == reference


def test_ranks_from_the_environment_take_their_shards_and_the_last_completes_the_stats(
    tmp_path, tiny_zoo, monkeypatch
):
    folder = tmp_path / "clips"
    media.write_audio(folder / "a.wav", media.noise(1.0, 16000), 16000)
    media.write_audio(folder / "b.wav", media.music(1.0, 16000), 16000)
    media.write_audio(folder / "c.wav", media.speech(1.0, 16000), 16000)
    output = tmp_path / "out"
    stale = {index: output / "data" / "captions" / f".shard-{index:05d}-of-00002.parquet.42.tmp"
             for index in (0, 1)}
    for path in stale.values():  # left by a killed writer
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a parquet file")
    argv = ["run", "tiny", "--input", str(folder), "--output", str(output), "--num-shards", "2",
            "--set", "experts.separation.enabled=false", "--set", "qa.enabled=false"]

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 0
    stats = json.loads((output / "stats.json").read_text())
    assert (stats["complete"], stats["shards"], stats["clips"]) == (False, 1, 1)  # shard 1 of [a, b], [c]
    assert stale[0].exists() and not stale[1].exists()  # rank 1 leaves rank 0's files alone

    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 0
    stats = json.loads((output / "stats.json").read_text())
    assert (stats["complete"], stats["shards"], stats["clips"]) == (True, 2, 3)
    assert not stale[0].exists()
    cues = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")
    assert sorted(cues["id"]) == ["a", "b", "c"]


def test_process_rank_reads_the_launcher_variables():
    assert process_rank({}) == ProcessRank(rank=0, world_size=1, local_rank=0)
    assert process_rank({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == ProcessRank(5, 8, 1)
    assert process_rank({"RANK": "1", "WORLD_SIZE": "2"}).local_rank == 1
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        process_rank({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="need 0 <= RANK < WORLD_SIZE, got RANK=2 and WORLD_SIZE=2"):
        process_rank({"RANK": "2", "WORLD_SIZE": "2"})
