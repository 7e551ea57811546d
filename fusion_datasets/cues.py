"""What an expert tells the later steps about a clip: its fusion cues, its QA context, its card coverage.

Each expert class says it of its own columns (:meth:`~fusion_datasets.steps.Step.fusion_cues`,
:meth:`~fusion_datasets.steps.Step.qa_context`, ``coverage``); the fusion and QA steps and the
dataset card ask the experts a run was configured with, so a new expert brings its cues with it.

Example:
    >>> format_tags([{"label": "Speech", "score": 1.0}, {"label": "Music", "score": 0.87}])
    'Speech(100%), Music(87%)'
    >>> text_cue({"sound_caption": "  A dog barks. "}, "sound_caption")
    'A dog barks.'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CueOptions:
    """How the fusion step wants cues written: tags scoring at least ``high_confidence`` are
    "high-confidence"; a text longer than ``max_chars`` (a hallucinating transcriber) is cut."""

    high_confidence: float = 0.5
    max_chars: int = 1000


def format_tags(tags: Sequence[Mapping[str, Any]]) -> str:
    """Tags as the paper writes them: ``Speech(100%), Music(87%)``."""
    return ", ".join(f"{tag['label']}({round(100 * tag['score'])}%)" for tag in tags)


def text_cue(row: Mapping[str, Any], column: str, max_chars: int | None = None) -> str | None:
    """``row[column]`` stripped and cut to ``max_chars`` (`` ...`` marks a cut); ``None`` if blank or missing."""
    text = (row.get(column) or "").strip()
    if not text:
        return None
    return text if max_chars is None or len(text) <= max_chars else text[:max_chars].rstrip() + " ..."


def text_cues(row: Mapping[str, Any], columns: Mapping[str, str], max_chars: int | None = None) -> dict[str, str]:
    """``{key: text_cue(row, column)}`` for each ``key: column`` of ``columns`` whose text is there."""
    cues = {key: text_cue(row, column, max_chars) for key, column in columns.items()}
    return {key: text for key, text in cues.items() if text is not None}
