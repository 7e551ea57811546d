"""`run tiny` on the demo's clips gives the outputs recorded in ``tests/data/run_tiny_outputs.json``.

The record was taken before the stage registry moved each expert's fusion cue, QA context and card
coverage into its step: every column of ``cues``, ``captions`` and ``qa`` and the exact fusion and QA
prompts of each clip must stay as they were. After an intended change of outputs, write the record
again with ``FUSION_DATASETS_WRITE_RECORD=1`` and say why in the commit.

The record holds only what every machine computes the same. Text is compared exactly: the fusion and QA
answers come from the zoo's fixed-answer LMs, which are checked on these very prompts when they are built
(:mod:`fusion_datasets.testing.zoo.fixed_answer`), and the random-weight models' greedy text did not move
under another CPU's kernels. Scores of random weights (tags, CLAP, no-speech probability) differ in their
last bits from one CPU to another: they are compared within :data:`TOLERANCE`, tags by label (two scores
closer than that may come in either order). The prompts are rendered from the recorded cues, so their
hashes check the rendering exactly, whatever a score's last bits do to a rounded percentage.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from fusion_datasets.cli import main
from fusion_datasets.demo import write_sample_clips
from fusion_datasets.layout import config_files
from fusion_datasets.media import MediaBatch
from fusion_datasets.pipeline.config import build_steps, load_config

RECORD = Path(__file__).parent.parent / "data" / "run_tiny_outputs.json"
# columns that say where and when a run happened, not what it computed
VOLATILE = {"audio", "video", "provenance", "llm_usage"}


# Scores are within [-1, 1]. Measured: `run tiny` with the zoo built and run on ATen's portable kernels, MKL's
# SSE4.2 path and oneDNN's SSE4.1 (another CPU's arithmetic) moved no score by more than 2.3e-7.
TOLERANCE = 1e-4


def _same(value: Any, recorded: Any) -> bool:
    """Equal, floats within :data:`TOLERANCE`."""
    if isinstance(value, float) and isinstance(recorded, float):
        return math.isclose(value, recorded, rel_tol=0.0, abs_tol=TOLERANCE)
    if isinstance(value, dict) and isinstance(recorded, dict):
        return value.keys() == recorded.keys() and all(_same(value[key], recorded[key]) for key in value)
    if isinstance(value, list) and isinstance(recorded, list):
        return len(value) == len(recorded) and all(map(_same, value, recorded))
    return value == recorded


def _prompts(output: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The sha256 of the fusion and QA prompts each clip's cues give, as the run's own steps render them."""
    steps = {step.stage: step for step in build_steps(load_config(str(output / "config.yaml")))}
    batch = MediaBatch({column: [row.get(column) for row in rows] for column in rows[0]})
    prompts: dict[str, dict[str, str]] = {}
    for stage in ("fusion", "qa"):
        for index, row in enumerate(rows):
            data = steps[stage].prompt_data(batch, index) if stage == "fusion" or row["caption"] else None
            text = steps[stage].config.render(data) if data else ""
            prompts.setdefault(row["id"], {})[stage] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return prompts


def _outputs(output: Path) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name in ("cues", "captions", "qa"):
        rows = sorted(pq.read_table(config_files(output, name)).to_pylist(), key=lambda row: row["id"])
        record[name] = [{key: value for key, value in row.items() if key not in VOLATILE} for row in rows]
    return record


def _by_label(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its tags in label order: two scores within the tolerance may come in either order."""
    return {**row, "audio_tags": sorted(row["audio_tags"], key=lambda tag: tag["label"])} \
        if row.get("audio_tags") else row


def test_run_tiny_outputs_are_the_recorded_ones(tmp_path, tiny_zoo):
    tiny_zoo.build_all()
    write_sample_clips(tmp_path / "clips")
    assert main(["run", "tiny", "--input", str(tmp_path / "clips"), "--output", str(tmp_path / "out")]) == 0
    outputs = _outputs(tmp_path / "out")
    if os.environ.get("FUSION_DATASETS_WRITE_RECORD"):
        RECORD.parent.mkdir(exist_ok=True)
        outputs["prompts"] = _prompts(tmp_path / "out", outputs["cues"])
        RECORD.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))
    assert _prompts(tmp_path / "out", recorded["cues"]) == recorded["prompts"]
    for name in ("cues", "captions", "qa"):
        assert [row["id"] for row in outputs[name]] == [row["id"] for row in recorded[name]]
        for row, recorded_row in zip(outputs[name], recorded[name]):
            assert _same(_by_label(row), _by_label(recorded_row)), (name, row, recorded_row)
