"""A real ``transformers serve`` with the tiny chat LM, one per test module, stopped by its PID."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from fusion_datasets.testing.server import ServerProcess, serve_model


@pytest.fixture(scope="module")
def chat_server(tiny_zoo) -> Iterator[ServerProcess]:
    with serve_model(tiny_zoo["chat-lm"]) as server:
        yield server


@pytest.fixture
def run_served(tiny_zoo, tmp_path) -> Callable[..., int]:
    """``fusion-datasets run tiny`` over the demo's clips into ``tmp_path/out``: audio tags computed here, the
    sound expert on ``sound_server`` and fusion on ``llm`` (a ``llm:`` mapping in YAML flow style), no other
    expert, no filter, no QA; ``extra`` are more arguments. Returns the exit status."""
    from fusion_datasets.cli import main
    from fusion_datasets.demo import write_sample_clips

    tiny_zoo.build_all()
    write_sample_clips(tmp_path / "clips")

    def run(sound_server: str, llm: str, *extra: str) -> int:
        disabled = (f"experts.{name}.enabled=false" for name in ("separation", "speech", "music", "visual"))
        return main(["run", "tiny", "--input", str(tmp_path / "clips"), "--output", str(tmp_path / "out"),
                     "--set", f"experts.sound.backend={{kind: server, base_urls: [{sound_server}]}}",
                     "--set", f"llm={llm}", "--set", "qa.enabled=false", "--set", "filter.enabled=false",
                     *(option for setting in disabled for option in ("--set", setting)), *extra])

    return run
