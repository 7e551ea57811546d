"""A real ``transformers serve`` with the tiny chat LM, one per test module, stopped by its PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fusion_datasets.testing.server import ServerProcess, serve_model


@pytest.fixture(scope="module")
def chat_server(tiny_zoo) -> Iterator[ServerProcess]:
    with serve_model(tiny_zoo["chat-lm"]) as server:
        yield server
