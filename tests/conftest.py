"""Test-session setup: every cache in a temporary folder, no network but loopback, the tiny zoo.

The environment is set at import time, before any Hugging Face library reads it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="fusion-datasets-tests-"))
for _variable, _sub in {
    "HF_HOME": "hf",
    "HF_DATASETS_CACHE": "hf/datasets",
    "HF_HUB_CACHE": "hf/hub",
    "XDG_CACHE_HOME": "xdg",
    "TORCH_HOME": "torch",
}.items():
    os.environ[_variable] = str(_SESSION_DIR / _sub)
os.environ.setdefault("FUSION_DATASETS_TINY_ZOO", str(_SESSION_DIR / "tiny-zoo"))
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RAY_AUTH_MODE"] = "disabled"  # local Ray instances of the tests: no token, no usage report
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.pop("HF_TOKEN", None)

_LOOPBACK = ("127.", "localhost", "::1")
_real_connect = socket.socket.connect


def _loopback_only_connect(self: socket.socket, address):  # noqa: ANN001 - socket's own signature
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not host.startswith(_LOOPBACK):
            raise ConnectionRefusedError(f"tests may only reach loopback addresses, not {host}")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only_connect


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


class TinyZoo:
    """Lazily built tiny models: ``tiny_zoo["whisper"]`` builds it on first use and returns its path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __getitem__(self, name: str) -> Path:
        from fusion_datasets.testing.zoo import build_tiny_model

        return build_tiny_model(name, self.root)

    def build_all(self) -> Path:
        """Every tiny model (what the ``tiny`` config runs), before processes under test need them."""
        from fusion_datasets.testing.zoo import build_tiny_zoo

        build_tiny_zoo(self.root)
        return self.root


@pytest.fixture(scope="session")
def tiny_zoo() -> TinyZoo:
    """The tiny model zoo, shared by the whole session.

    Set ``FUSION_DATASETS_TINY_ZOO`` to a folder to keep it between sessions while developing.
    """
    return TinyZoo(Path(os.environ["FUSION_DATASETS_TINY_ZOO"]))


@pytest.fixture(autouse=True)
def _own_fusion_datasets_cache(tmp_path, monkeypatch):
    """Each test its own fusion_datasets cache (staging folders, the benchmarks the leakage guard knows)."""
    monkeypatch.setenv("FUSION_DATASETS_CACHE", str(tmp_path / "fusion-datasets-cache"))
