"""Versioned prompt templates (``<name>_v<N>.txt``). A changed prompt is a new file, never an edit."""

from __future__ import annotations

from functools import cache
from importlib import resources

CUSTOM = "custom"  # the name of a prompt that is not a bundled version's text


@cache
def bundled_versions() -> frozenset[str]:
    """The names of the bundled prompts (``fusion_v1``, ``qa_v1``, ...)."""
    return frozenset(entry.name.removesuffix(".txt") for entry in resources.files(__name__).iterdir()
                     if entry.name.endswith(".txt"))


@cache
def read_prompt(name: str) -> str:
    """The text of the bundled prompt ``name`` (the file ``fusion_datasets/prompts/<name>.txt``).

    Example:
        >>> read_prompt("sound_v1")
        'Describe the audio in detail, but there is no need for association or speculation.'
    """
    return resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8").strip()


def prompt_name(text: str, version: str) -> str:
    """``version`` where ``text`` is that bundled prompt's text, else :data:`CUSTOM`: a record never gives a
    bundled version's name to another text.

    Example:
        >>> prompt_name(read_prompt("qa_v1"), "qa_v1"), prompt_name("Ask about {clip_json}", "qa_v1")
        ('qa_v1', 'custom')
    """
    return version if version in bundled_versions() and text == read_prompt(version) else CUSTOM
