"""Versioned prompt templates (``<name>_v<N>.txt``). A changed prompt is a new file, never an edit."""

from __future__ import annotations

from importlib import resources


def read_prompt(name: str) -> str:
    """The text of the bundled prompt ``name`` (the file ``fusion_datasets/prompts/<name>.txt``).

    Example:
        >>> read_prompt("sound_v1")
        'Describe the audio in detail, but there is no need for association or speculation.'
    """
    return resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8").strip()
