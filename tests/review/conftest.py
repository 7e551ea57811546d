"""A real tiny run to review, and the review server as a user starts it (a subprocess on a free port)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusion_datasets.cli import main
from fusion_datasets.testing import media


@pytest.fixture(scope="session")
def review_output(tmp_path_factory, tiny_zoo) -> Path:
    """``run tiny`` over 4 clips: speech, music with its video, noise with a broken video (a captioned clip
    with a visual error) and a corrupt file (no caption). The threshold keeps music and removes the others."""
    folder = tmp_path_factory.mktemp("review-clips")
    media.write_audio(folder / "speech.wav", media.speech(2.0, 16000), 16000)
    media.write_audio(folder / "music.wav", media.music(2.0, 22050, channels=2), 22050)
    media.write_video(folder / "music.mp4", 2.0, fps=5, size=(64, 48))
    media.write_audio(folder / "noise.wav", media.noise(3.0, 16000), 16000)
    (folder / "noise.mp4").write_bytes(b"not a video" * 64)
    (folder / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    output = tmp_path_factory.mktemp("review-run") / "out"
    assert main(["run", "tiny", "--input", str(folder), "--output", str(output),
                 "--set", "experts.separation.enabled=false", "--set", "filter.threshold=-0.12"]) == 0
    return output


@pytest.fixture
def output(review_output, tmp_path) -> Path:
    """A copy of the run's output for one test to write judgements into."""
    return shutil.copytree(review_output, tmp_path / "out")


class ReviewProcess:
    """``fusion-datasets review`` running in its own process; ``url`` is the address it printed."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "fusion_datasets.cli", "review", *arguments,
                                         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            self.process.kill()
            raise AssertionError(f"the review server did not start: {line}{self.process.stderr.read()}")
        self.url = found.group(0)

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, as when a terminal is closed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def start_review() -> Iterator[Callable[..., ReviewProcess]]:
    """Start review servers (``start_review(OUT, "--reviewer", "alice")``); all are killed at the end."""
    started: list[ReviewProcess] = []

    def start(*arguments: str | os.PathLike) -> ReviewProcess:
        started.append(ReviewProcess(*map(str, arguments)))
        return started[-1]

    yield start
    for review in started:
        if review.process.poll() is None:
            review.kill()
