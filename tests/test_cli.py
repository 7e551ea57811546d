import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForAudioClassification

from fusion_datasets.cli import main


def test_tiny_zoo_command_writes_loadable_models(tmp_path, capsys):
    assert main(["tiny-zoo", str(tmp_path), "--only", "ast-audioset", "htdemucs"]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert sorted(listed) == ["ast-audioset", "htdemucs"]
    model = AutoModelForAudioClassification.from_pretrained(listed["ast-audioset"])
    assert model.config.num_labels == 527
    assert (tmp_path / "htdemucs" / "htdemucs.yaml").exists()


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "fusion-datasets"
    completed = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert completed.stdout.startswith("fusion-datasets ")


def test_unknown_tiny_model_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tiny-zoo", str(tmp_path), "--only", "gpt-5"])
    assert exit_.value.code == 2
    assert "invalid choice: 'gpt-5'" in capsys.readouterr().err
