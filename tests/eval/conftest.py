"""Synthetic clips for the evaluation tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fusion_datasets.testing import media


@pytest.fixture(scope="session")
def eval_clips(tmp_path_factory) -> dict[str, str]:
    """Four 2 s clips (music, noise, speech, silence) at 16 kHz and a corrupt file."""
    folder = tmp_path_factory.mktemp("eval-clips")
    recipes = {"music": media.music, "noise": media.noise, "speech": media.speech, "silence": media.silence}
    paths = {
        name: str(media.write_audio(folder / f"{name}.wav", make(2.0, 16000), 16000))
        for name, make in recipes.items()
    }
    (folder / "corrupt.wav").write_bytes(b"not a wav file" * 100)
    return {**paths, "corrupt": str(folder / "corrupt.wav")}


@pytest.fixture
def make_benchmark(tmp_path, eval_clips):
    """``make_benchmark(name, rows, **options)``: a benchmark built by ``fusion_datasets.builders.build``
    from ``rows`` in the FusionAudio eval JSON format; audio ids ``clips/<clip>.wav`` name ``eval_clips``."""
    from fusion_datasets.builders import build

    def make(name: str, rows: list[dict], **options) -> Path:
        data = tmp_path / f"{name}-data"
        (data / "clips").mkdir(parents=True)
        for clip, path in eval_clips.items():
            shutil.copy(path, data / "clips" / f"{clip}.wav")
        for path, text in options.pop("files", {}).items():
            (data / path).write_text(text)
        (data / f"{name}.json").write_text(json.dumps(rows, indent=1))
        output = tmp_path / name
        build(name, data, output, **options)
        return output

    return make


@pytest.fixture
def fa_row():
    """``fa_row(audio, instruction, output, task="", **extra)``: a FusionAudio eval JSON row about
    ``clips/<audio>.wav``."""

    def row(audio: str, instruction: str, output: str, task: str = "", **extra) -> dict:
        return {
            "audio_id": f"clips/{audio}.wav",
            "instruction": instruction,
            "input": "",
            "dataset": "test",
            "task": task,
            "output": output,
            **extra,
        }

    return row


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, records)``: one record per line (a string is written as is: a broken line)."""

    def write(path: Path, records: list) -> Path:
        path.write_text(
            "".join((record if isinstance(record, str) else json.dumps(record)) + "\n" for record in records)
        )
        return path

    return write


@pytest.fixture
def report_rows():
    """``report_rows(folder)``: ``{(task, metric): (value, n)}`` of the ``report.json`` in ``folder``."""

    def read(folder: Path) -> dict[tuple[str, str], tuple[float, int]]:
        report = json.loads((folder / "report.json").read_text())
        return {(row["task"], row["metric"]): (row["value"], row["n"]) for row in report["results"]}

    return read
