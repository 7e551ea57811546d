"""An output made before a refactor is one the refactored code finds nothing to do in.

``tests/data/pre_change_output`` is a `run tiny` output over the demo's clips, committed as it was written (less
its ``.cache`` and the card's figure). Its parts record each stage's fingerprint, which hashes the step's class
name and config, model paths included: so the clips and the tiny zoo are put at the fixed paths the output was made
with (:data:`FIXED`), and a rerun must find every part done, write nothing and leave every file as it was.

To record it again after an intended change of fingerprints, run `run tiny` over ``FIXED / "clips"`` with
``FUSION_DATASETS_TINY_ZOO=FIXED / "zoo"`` into a folder named ``pre-out`` and say why in the commit.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from fusion_datasets.cli import main
from fusion_datasets.demo import write_sample_clips
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.pipeline.plan import Plan

FIXTURE = Path(__file__).parent.parent / "data" / "pre_change_output"
FIXED = Path("/tmp/fusion-datasets-pre-change")  # where the output's clips and models were


@pytest.fixture
def fixed_paths(tiny_zoo, monkeypatch):
    """The demo's clips and the tiny zoo at the paths the committed output names."""
    tiny_zoo.build_all()
    shutil.rmtree(FIXED, ignore_errors=True)
    FIXED.mkdir(parents=True)
    (FIXED / "zoo").symlink_to(tiny_zoo.root.resolve(), target_is_directory=True)
    write_sample_clips(FIXED / "clips")
    monkeypatch.setenv("FUSION_DATASETS_TINY_ZOO", str(FIXED / "zoo"))
    yield FIXED
    shutil.rmtree(FIXED, ignore_errors=True)


def _files(folder: Path) -> dict[str, Any]:
    """Each file's bytes; a JSON file's data (the order of its keys is not what it says)."""
    return {str(path.relative_to(folder)): json.loads(path.read_text()) if path.suffix == ".json" else path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file() and ".cache" not in path.parts
            and path.suffix != ".png"}


def test_a_rerun_over_an_output_made_before_the_change_finds_nothing_to_do(tmp_path, fixed_paths, capsys):
    output = tmp_path / "pre-out"
    shutil.copytree(FIXTURE, output)
    command = ["run", "tiny", "--input", str(fixed_paths / "clips"), "--output", str(output)]

    assert main([*command, "--dry-run"]) == 0
    assert "4 clips already done, 0 new clips to do in 0 parts" in capsys.readouterr().out
    assert main(command) == 0
    assert "0 parts written; the output holds 4 clips, 4 captions, 8 QA pairs" in capsys.readouterr().out
    assert _files(output) == _files(FIXTURE)


FINGERPRINTS = Path(__file__).parent.parent / "data" / "config_fingerprints.json"
BUNDLED = sorted(path.stem for path in resources.files("fusion_datasets").joinpath("configs").iterdir()
                 if path.name.endswith(".yaml"))


def test_every_bundled_configs_fingerprints_are_the_recorded_ones():
    """Each stage's fingerprint under each bundled config (the tiny zoo at ``/zoo``), as recorded before the
    refactor: the served and in-process paper configs too, which no test runs end to end."""
    plans = {name: Plan.from_config(load_config(name, tiny_zoo=Path("/zoo"))) for name in BUNDLED}
    fingerprints = {name: {stage: entry["fingerprint"] for stage, entry in plan.fingerprints().items()}
                    for name, plan in plans.items()}
    if os.environ.get("FUSION_DATASETS_WRITE_RECORD"):
        FINGERPRINTS.write_text(json.dumps(fingerprints, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert fingerprints == json.loads(FINGERPRINTS.read_text(encoding="utf-8"))
