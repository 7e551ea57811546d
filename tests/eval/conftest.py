"""Synthetic clips for the evaluation tests."""

from __future__ import annotations

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
