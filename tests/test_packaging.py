"""The wheel ships every package, the top-level builders/, cards/ and eval/ folders included."""

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _listed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return set(config["options"]["packages"].split())


def test_every_python_folder_of_the_package_is_listed():
    folders = {p.parent for p in (ROOT / "fusion_datasets").rglob("*.py")}
    found = {".".join(folder.relative_to(ROOT).parts) for folder in folders}
    found |= {f"fusion_datasets.{name}" for name in ("builders", "cards", "evaluate_modules")}
    assert found == _listed_packages()


@pytest.mark.slow
def test_wheel_contains_builders_cards_and_evaluate_modules(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("fusion_datasets/builders/__init__.py", "fusion_datasets/cards/__init__.py",
                     "fusion_datasets/evaluate_modules/clap_retrieval/clap_retrieval.py",
                     "fusion_datasets/configs/tiny.yaml", "fusion_datasets/prompts/fusion_v1.txt",
                     "fusion_datasets/resources/audioset_labels.csv"):
        assert expected in names
