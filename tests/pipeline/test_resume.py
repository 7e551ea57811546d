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
from fusion_datasets.pipeline.work import owner
from fusion_datasets.runtime import ProcessRank, process_rank
from fusion_datasets.testing import media

IDS = ["corrupt", "mix", "music", "noise", "silence", "speech_a", "speech_b", "video_only"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, tiny_zoo) -> Path:
    """Eight clips (four shards of two): speech, music with its video, a video alone, a corrupt file."""
    tiny_zoo.build_all()  # now, not concurrently in the processes under test
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


def _signal_when(command: list[str], log: Path, ready: Callable[[], bool], poll: float,
                 sent: signal.Signals = signal.SIGKILL) -> int:
    """Start ``command``, send ``sent`` to it and the workers it forked (as a terminal's Ctrl-C does) once
    ``ready()``; fail if it ends first. Returns its exit code."""
    with log.open("w") as stream:
        # SIGINT as in a terminal's foreground job (a shell starts background jobs with SIGINT ignored)
        process = subprocess.Popen(command, env=os.environ, stdout=stream, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while process.poll() is None and not ready():
            time.sleep(poll)
        assert process.poll() is None, f"ended before the signal:\n{log.read_text()[-3000:]}"
        os.killpg(process.pid, sent)
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


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
    assert stats["complete"] and stats["parts"] == len(list((output / "data" / "cues").glob("*.parquet")))
    assert (stats["clips"], stats["captions"], stats["qa_pairs"]) == (len(IDS), len(captions), qa.num_rows)
    assert stats["errors_by_stage"].get("decode", 0) >= 1  # the corrupt clip, recorded, not fatal
    assert not [*(output / "data").rglob("*.tmp"), *(output / "state").rglob("*.tmp")]
    parts = {path.stem for path in (output / "data").rglob("*.parquet")}
    parts |= {path.stem for path in (output / "state").glob("*")}
    assert parts == {path.stem for path in (output / "data" / "cues").glob("*.parquet")}  # no stray file
    return captions


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory) -> dict[str, str]:
    """Captions per id of one uninterrupted single-process run."""
    output = tmp_path_factory.mktemp("reference") / "out"
    _run(_command(clips, output), output.parent / "run.log")
    return _assert_complete(output)


def _done_part_files(output: Path) -> list[Path]:
    return sorted(path for path in (output / "data").rglob("part-*.parquet")
                  if (output / "data" / "cues" / path.name).exists())


def _first_part_done(output: Path) -> bool:
    return bool(list((output / "data" / "cues").glob("part-*.parquet")))


def _writing_a_part(output: Path) -> bool:
    """A part is being written: a temporary file exists, or a part has files but no ``cues`` yet."""
    data = output / "data"
    if list(data.glob("*/.*.tmp")) or list((output / "state").glob(".*.tmp")):
        return True
    started = {path.name for path in data.glob("*/part-*.parquet") if path.parent.name != "cues"}
    return bool(started - {path.name for path in data.glob("cues/part-*.parquet")})


KILL_POINTS = {
    "right_after_start": (lambda output: (output / "config.yaml").exists(), 0.01),
    "during_a_step": (_first_part_done, 0.05),  # a part is written: the process works on the next one
    "while_writing_a_part": (_writing_a_part, 0.001),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_rerun_gives_every_clip_once(point, clips, reference, tmp_path):
    output = tmp_path / "out"
    ready, poll = KILL_POINTS[point]
    code = _signal_when(_command(clips, output), tmp_path / "killed.log", lambda: ready(output), poll)
    assert code == -signal.SIGKILL
    kept = {path: path.stat().st_mtime_ns for path in _done_part_files(output)}

    _run(_command(clips, output), tmp_path / "rerun.log")
    assert _assert_complete(output) == reference  # the same dataset as a run never killed
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # a finished part is not redone


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_ctrl_c_stops_with_a_line_saying_how_to_resume(point, clips, reference, tmp_path):
    output = tmp_path / "out"
    ready, poll = KILL_POINTS[point]
    log = tmp_path / "interrupted.log"
    code = _signal_when(_command(clips, output), log, lambda: ready(output), poll, signal.SIGINT)
    text = log.read_text()
    assert code == 130, text[-3000:]
    assert "interrupted. Finished parts are kept: rerun the same command to resume." in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text

    _run(_command(clips, output), tmp_path / "rerun.log")
    assert _assert_complete(output) == reference


@pytest.mark.slow
def test_two_processes_split_the_shards_by_rank(clips, reference, tmp_path):
    """Two processes through ``torchrun`` (``accelerate launch --cpu`` starts just one on a CPU machine)."""
    output = tmp_path / "out"
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    log = _run(_command(clips, output, launcher=launcher), tmp_path / "torchrun.log")
    took = {rank: (int(total), int(here)) for rank, total, here in
            re.findall(r"rank (\d) of 2: \d+ new clips in all, (\d+) parts to write, (\d+) of them here", log)}
    assert sorted(took) == ["0", "1"] and took["0"][0] == took["1"][0]  # both saw the same work
    assert took["0"][1] > 0 and took["1"][1] > 0 and took["0"][1] + took["1"][1] == took["0"][0]
    assert _assert_complete(output).keys() == reference.keys()


@pytest.mark.slow
def test_num_proc_2_gives_the_same_dataset(clips, reference, tmp_path):
    output = tmp_path / "out"
    _run(_command(clips, output, "--set", "output.num_proc=2"), tmp_path / "run.log")
    assert _assert_complete(output) == reference


def test_ranks_from_the_environment_take_their_clips_and_the_last_completes_the_stats(
    tmp_path, tiny_zoo, monkeypatch
):
    folder = tmp_path / "clips"
    media.write_audio(folder / "a.wav", media.noise(1.0, 16000), 16000)
    media.write_audio(folder / "b.wav", media.music(1.0, 16000), 16000)
    media.write_audio(folder / "c.wav", media.speech(1.0, 16000), 16000)
    output = tmp_path / "out"
    finished = subprocess.Popen(["true"])
    finished.wait()
    writer = subprocess.Popen(["sleep", "120"])  # another rank, still writing
    stale = output / "data" / "captions" / f".part-0123456789ab-0000.parquet.{finished.pid}.tmp"
    live = output / "data" / "captions" / f".part-ba9876543210-0000.parquet.{writer.pid}.tmp"
    for path in (stale, live):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a parquet file")
    argv = ["run", "tiny", "--input", str(folder), "--output", str(output), "--num-shards", "2",
            "--set", "experts.separation.enabled=false", "--set", "qa.enabled=false"]
    by_rank = {rank: sorted(clip for clip in "abc" if owner(clip, 2) == rank) for rank in (0, 1)}
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        assert main(argv) == 0
        stats = json.loads((output / "stats.json").read_text())
        assert (stats["complete"], stats["clips"], stats["clips_to_do"]) == (False, len(by_rank[1]), len(by_rank[0]))
        assert not stale.exists() and live.exists()  # a live writer's file is left alone
    finally:
        writer.kill()
        writer.wait()

    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 0
    stats = json.loads((output / "stats.json").read_text())
    assert (stats["complete"], stats["clips"], stats["clips_to_do"]) == (True, 3, 0)
    assert not live.exists()
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
