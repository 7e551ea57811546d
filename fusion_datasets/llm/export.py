"""Export captions and QA pairs to the FusionAudio release format.

FusionAudio-1.2M ships JSON lists of ``{audio_id, instruction, input, dataset, task, output}`` rows:
captions as task ``"Captioning questions"``, QA pairs with their question as the instruction.

Example:
    >>> rows = to_fusionaudio(captions, explode_qa(captions))  # doctest: +SKIP
    >>> write_fusionaudio(rows, "out/fusionaudio.json")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

CAPTION_TASK = "Captioning questions"
CAPTION_INSTRUCTION = "Describe the audio in detail."
DEFAULT_DATASET = "FusionAudio"


def qa_task(qa_type: str) -> str:
    """The task name of a QA pair, in the style of ``Captioning questions``.

    Example:
        >>> qa_task("counting_and_order")
        'Counting and order questions'
    """
    return f"{qa_type.replace('_', ' ').capitalize()} questions"


def _row(audio_id: str, instruction: str, dataset: str, task: str, output: str) -> dict[str, str]:
    return {"audio_id": audio_id, "instruction": instruction, "input": "", "dataset": dataset, "task": task,
            "output": output}


def to_fusionaudio(
    captions_ds: datasets.Dataset, qa_ds: datasets.Dataset | None = None
) -> list[dict[str, str]]:
    """FusionAudio rows: one per caption of ``captions_ds``, then one per pair of ``qa_ds`` (``qa`` config).

    ``audio_id`` is the clip's ``id``; ``dataset`` is its ``source`` where there is one. Clips without
    a caption (uncertain, failed) are left out.
    """
    columns = [column for column in ("id", "caption", "source") if column in captions_ds.column_names]
    sources: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    for clip in captions_ds.select_columns(columns):
        source = sources[clip["id"]] = clip.get("source") or DEFAULT_DATASET
        if clip["caption"]:
            rows.append(_row(clip["id"], CAPTION_INSTRUCTION, source, CAPTION_TASK, clip["caption"]))
    skipped = len(sources) - len(rows)
    if skipped:
        logger.info("left out %d of %d clips without a caption", skipped, len(sources))
    for pair in qa_ds if qa_ds is not None else ():
        source = sources.get(pair["clip_id"], DEFAULT_DATASET)
        rows.append(_row(pair["clip_id"], pair["question"], source, qa_task(pair["qa_type"]), pair["answer"]))
    return rows


def write_fusionaudio(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as one JSON list (UTF-8, the release files' layout) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
