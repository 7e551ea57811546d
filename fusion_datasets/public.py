"""What an output may say about the machine that made it: models by Hub id, never a home or cache path.

Everything a run publishes (the ``provenance`` column, the card, ``manifest.json``, ``config.yaml``) names a
model by its Hub id and revision. A model loaded from the Hub's cache folder is named by the id and
snapshot the folder holds; any other local model by a stable name, ``local:<folder name>``. Other local
paths in the published config (the input, the output) are given by their last component.

Example:
    >>> model_reference("/home/me/.cache/huggingface/hub/models--openai--whisper-large-v3/snapshots/" + "a" * 40)
    ('openai/whisper-large-v3', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')
    >>> model_reference("openai/whisper-large-v3", "main")
    ('openai/whisper-large-v3', 'main')
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath
from typing import Any

LOCAL = "local:"
MODEL_KEYS = ("model", "repo")  # the config keys that name a model (Demucs names its own by `repo`)
_HUB_CACHE = re.compile(r"models--(?P<org>[^/\\]+?)--(?P<name>[^/\\]+)[/\\]snapshots[/\\](?P<sha>[0-9a-f]{40})")


def _is_local(value: str) -> bool:
    return os.path.isabs(value) or value.startswith(("./", "../", "~")) or os.path.exists(value)


def _name(path: str) -> str:
    """The last component of a local path (``~`` expanded, a trailing separator ignored)."""
    return PurePath(os.path.normpath(os.path.expanduser(path))).name


def model_reference(model: str, revision: str | None = None) -> tuple[str, str | None]:
    """``(name, revision)`` of ``model`` as an output may show it (see the module's docstring)."""
    cached = _HUB_CACHE.search(model)
    if cached:
        return f"{cached['org']}/{cached['name']}", revision or cached["sha"]
    if _is_local(model):
        return LOCAL + _name(model), revision
    return model, revision


def local_models(value: Any, key: str | None = None) -> dict[str, str]:
    """The local models of a config mapping: each public name (``local:<folder name>``) -> the folder it
    stands for, for this machine's own tools (the review's calibrate command), never for an output's readers.

    Example:
        >>> local_models({"filter": {"model": "/models/clap"}, "llm": {"model": "Qwen/QwQ-32B"}})
        {'local:clap': '/models/clap'}
    """
    if isinstance(value, dict):
        return {name: path for item_key, item in value.items() for name, path in local_models(item, item_key).items()}
    if isinstance(value, (list, tuple)):
        return {name: path for item in value for name, path in local_models(item, key).items()}
    if isinstance(value, str) and key in MODEL_KEYS and model_reference(value)[0].startswith(LOCAL):
        return {model_reference(value)[0]: os.path.abspath(os.path.expanduser(value))}
    return {}


def public_config(value: Any, key: str | None = None) -> Any:
    """A config mapping with its models named by :func:`model_reference` and its local paths by their name."""
    if isinstance(value, dict):
        return {name: public_config(item, name) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_config(item, key) for item in value]
    if isinstance(value, str) and key in MODEL_KEYS:
        return model_reference(value)[0]
    if isinstance(value, str) and "://" not in value and _is_local(value):
        return _name(value)
    return value
