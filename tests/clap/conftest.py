"""Synthetic clips and the tiny LAION-CLAP checkpoint shared by the CLAP tests."""

from __future__ import annotations

import pytest

from fusion_datasets.testing import media


@pytest.fixture(scope="session")
def clap_clips(tmp_path_factory) -> dict[str, str]:
    """Short clips at several rates, a 12 s clip (longer than CLAP's 10 s window) and two broken files."""
    folder = tmp_path_factory.mktemp("clap-clips")
    recipes = {
        "music": (media.music(3.0, 44100, channels=2), 44100),
        "noise": (media.noise(3.0, 22050), 22050),
        "speech": (media.speech(3.0, 16000), 16000),
        "long": (media.mix(media.music(12.0, 48000), media.noise(12.0, 48000), gains=[1.0, 0.3]), 48000),
    }
    paths = {
        name: str(media.write_audio(folder / f"{name}.wav", audio, rate))
        for name, (audio, rate) in recipes.items()
    }
    (folder / "corrupt.wav").write_bytes(b"not a wav file" * 100)
    return {**paths, "corrupt": str(folder / "corrupt.wav"), "missing": str(folder / "missing.wav")}


@pytest.fixture(scope="session")
def tiny_laion_clap(tmp_path_factory) -> tuple[str, str]:
    """``(checkpoint, text_encoder)`` of a tiny original LAION-CLAP checkpoint built offline."""
    pytest.importorskip("laion_clap")
    from fusion_datasets.testing.zoo.laion_clap import CHECKPOINT, TEXT_ENCODER, build_tiny_laion_clap

    folder = tmp_path_factory.mktemp("tiny-laion-clap")
    build_tiny_laion_clap(folder)
    return str(folder / CHECKPOINT), str(folder / TEXT_ENCODER)
