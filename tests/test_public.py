"""What published outputs say of models and paths: Hub ids and stable names, never a machine's folders."""

from __future__ import annotations

import pytest

from fusion_datasets.public import model_reference, public_config

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("model", "revision", "expected"), [
    ("Qwen/Qwen2-Audio-7B-Instruct", None, ("Qwen/Qwen2-Audio-7B-Instruct", None)),
    ("Qwen/Qwen2-Audio-7B-Instruct", "v1.0", ("Qwen/Qwen2-Audio-7B-Instruct", "v1.0")),
    (f"/home/me/.cache/huggingface/hub/models--openai--whisper-large-v3/snapshots/{SNAPSHOT}", None,
     ("openai/whisper-large-v3", SNAPSHOT)),
    (f"/data/hub/models--laion--clap-htsat-fused/snapshots/{SNAPSHOT}/", "main", ("laion/clap-htsat-fused", "main")),
    ("/home/me/models/my-whisper/", None, ("local:my-whisper", None)),
    ("./checkpoints/fusion-lm", None, ("local:fusion-lm", None)),
    ("~/models/qa-lm", "r2", ("local:qa-lm", "r2")),
])
def test_models_are_named_by_hub_id_or_a_stable_local_name(model, revision, expected):
    assert model_reference(model, revision) == expected


def test_a_relative_folder_that_exists_is_local(tmp_path, monkeypatch):
    (tmp_path / "models" / "ast").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert model_reference("models/ast") == ("local:ast", None)
    hub_id = "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert model_reference(hub_id) == (hub_id, None)


def test_the_published_config_keeps_settings_and_urls_and_drops_machine_paths():
    config = {
        "input": {"path": "/home/me/audio/esc50", "split": "train"},
        "experts": {"separation": {"model": "htdemucs", "repo": "/home/me/.cache/demucs"},
                    "speech": {"model": "/srv/models/whisper", "batch_size": 4}},
        "llm": {"kind": "server", "model": "Qwen/QwQ-32B", "base_urls": ["http://10.0.0.5:8080/v1"]},
        "output": {"path": "hf://datasets/me/esc50-captions"},
    }
    assert public_config(config) == {
        "input": {"path": "esc50", "split": "train"},
        "experts": {"separation": {"model": "htdemucs", "repo": "local:demucs"},
                    "speech": {"model": "local:whisper", "batch_size": 4}},
        "llm": {"kind": "server", "model": "Qwen/QwQ-32B", "base_urls": ["http://10.0.0.5:8080/v1"]},
        "output": {"path": "hf://datasets/me/esc50-captions"},
    }
