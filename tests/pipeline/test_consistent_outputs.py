"""A reader of an output folder sees one committed state at every moment of a rerun.

A rerun that redoes parts (a changed stage config) or adds clips is stopped at each of its file operations
in turn (every rename and deletion in the output: a SIGKILL there leaves the folder as it is then). After
each stop, ``load_dataset(OUT, name)`` gives every clip at most once, the card lists only files that exist,
``stats.json`` says ``complete: false`` and ``push`` refuses the folder; the next run completes it. The stop
is raised from ``os.replace`` and ``Path.unlink`` (a real kill cannot be aimed at one operation), as an
exception that no code of the toolkit catches.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
import pytest

from fusion_datasets import runtime
from fusion_datasets.cli import main
from fusion_datasets.hub.push import check_run_output
from fusion_datasets.layout import CONFIGS, config_files
from fusion_datasets.testing.media import music, noise, speech, write_audio
from fusion_datasets.testing.runs import TAGGING_ONLY

# the tagger only (fast): fusion, the filter and QA read its tags, which is not what is tested here
OPTIONS = [*TAGGING_ONLY, "--set", "output.shard_size=2"]  # in parts of two clips


class Killed(BaseException):
    """The process dies here: no ``except`` of the toolkit catches a BaseException that is not its own."""


def _write_clips(folder: Path, count: int) -> None:
    makers = (speech, music, noise)
    for index in range(count):
        write_audio(folder / f"clip{index}.wav", makers[index % 3](1.0, 16000), 16000)


def _run(clips: Path, output: Path, *extra: str) -> int:
    return main(["run", "tiny", "--input", str(clips), "--output", str(output), *OPTIONS, *extra])


@contextmanager
def _killed_after(operations: int | None) -> Iterator[list[str]]:
    """Within the block, the ``operations``-th rename or deletion in an output folder (``out``) raises
    :class:`Killed` (``None``: none does); yields the list that logs those operations."""
    done: list[str] = []
    real_replace, real_unlink = os.replace, Path.unlink

    def count(what: str) -> None:
        done.append(what)
        if len(done) == operations:
            raise Killed(what)

    def seen(path: Path) -> bool:  # by readers: the output, not its .cache/ (locks, the list of writers)
        return "out" in path.parts and ".cache" not in path.parts

    def replace(source, target, *args, **kwargs):
        real_replace(source, target, *args, **kwargs)
        if seen(Path(target)):
            count(f"replace {target}")

    def unlink(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        if seen(path):
            count(f"unlink {path}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        patch.setattr(Path, "unlink", unlink)
        yield done


def _check_consistent(output: Path) -> list[str]:
    """What any reader must see; returns the ids of ``cues``."""
    for config in CONFIGS:
        assert all(path.is_file() for path in config_files(output, config)), config
    ids = datasets.load_dataset(str(output), "cues", split="train", download_mode="force_redownload")["id"]
    assert len(ids) == len(set(ids))
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("change", ["config", "clips"])
def test_a_rerun_stopped_at_any_file_operation_leaves_a_consistent_output(tmp_path, tiny_zoo, change):
    tiny_zoo.build_all()
    clips, base = tmp_path / "clips", tmp_path / "base" / "out"
    _write_clips(clips, 4)
    assert _run(clips, base) == 0
    extra = ["--set", "experts.tagging.top_k=3"] if change == "config" else []
    if change == "clips":
        _write_clips(clips, 6)  # two more clips: a third part
    expected = [f"clip{index}" for index in range(4 if change == "config" else 6)]
    # how many file operations the rerun makes, then a rerun stopped after each of them
    counted = tmp_path / "counted" / "out"
    shutil.copytree(base, counted)
    with _killed_after(None) as operations:
        assert _run(clips, counted, *extra) == 0
    assert len(operations) >= 6
    for stop in range(1, len(operations)):
        output = tmp_path / f"stop{stop}" / "out"
        shutil.copytree(base, output)
        with _killed_after(stop) as done, pytest.raises(Killed):
            _run(clips, output, *extra)
        ids = _check_consistent(output)
        if json.loads((output / "stats.json").read_text())["complete"]:  # stopped once every part was in
            assert sorted(ids) == expected, done[-1]
        else:
            with pytest.raises(ValueError, match="mid-run"):
                check_run_output(output)
        assert _run(clips, output, *extra) == 0
        assert sorted(_check_consistent(output)) == expected
        tags = datasets.load_dataset(str(output), "cues", split="train")["audio_tags"]
        assert change == "clips" or all(len(row) <= 3 for row in tags)
        assert json.loads((output / "stats.json").read_text())["complete"]
        check_run_output(output)


@pytest.mark.slow
def test_a_second_run_on_an_output_being_written_is_refused_whatever_its_config(tmp_path, tiny_zoo, capsys):
    tiny_zoo.build_all()
    clips, output = tmp_path / "clips", tmp_path / "out"
    _write_clips(clips, 24)
    command = ["run", "tiny", "--input", str(clips), "--output", str(output), *OPTIONS]
    first = subprocess.Popen([sys.executable, "-m", "fusion_datasets.cli", *command],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        writers = output / ".cache" / "writers.json"
        deadline = time.monotonic() + 120
        while not (writers.is_file() and first.pid in [w["pid"] for w in json.loads(writers.read_text() or "[]")]):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never started writing"
            time.sleep(0.1)
        for extra in ([], ["--set", "experts.tagging.top_k=3"], ["--set", "output.shard_size=5"]):
            assert _run(clips, output, *extra) == 2, extra
            error = capsys.readouterr().err
            assert f"is being written by another run (pid {first.pid}" in error and "Traceback" not in error
        assert first.poll() is None, "the refusals were tested after the first run had ended"
        assert first.wait(timeout=600) == 0
    finally:
        first.kill()
    assert sorted(_check_consistent(output)) == sorted(f"clip{index}" for index in range(24))
    assert not json.loads(writers.read_text())  # the first run left the list as it found it
    assert _run(clips, output, "--set", "experts.tagging.top_k=3") == 0  # now it may


@pytest.fixture
def sigint_handler():
    """Restore Python's own SIGINT handler and forget the interrupt after a test that presses Ctrl-C."""
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)
    runtime._INTERRUPTED.clear()


def test_ctrl_c_during_a_commit_finishes_the_commit_then_stops(tmp_path, tiny_zoo, sigint_handler):
    clips, output = tmp_path / "clips", tmp_path / "out"
    _write_clips(clips, 4)
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        real_replace(source, target, *args, **kwargs)
        if Path(target).parent == output / "state":  # a part's state: its commit is under way
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered to this (the main) thread at once

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        assert _run(clips, output) == 130
    parts = [path.stem for path in config_files(output, "cues")]
    assert len(parts) == 1  # the part under way was committed whole, and is what the card lists
    assert all(path.is_file() for config in CONFIGS for path in config_files(output, config))
    assert (output / "state" / f"{parts[0]}.json").is_file()
