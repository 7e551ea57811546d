"""Export captions and QA pairs to the FusionAudio release format.

FusionAudio-1.2M ships JSON lists of ``{audio_id, instruction, input, dataset, task, output}`` rows:
captions as task ``"Captioning questions"``, QA pairs with their question as the instruction. ``audio_id``
is the path of the audio file (FusionAudio's README defines it so, and its training and inference code load
it as a path); each row also keeps its clip's ``id``.

:class:`FusionAudioExporter` writes the same rows part by part (``fusion-datasets export OUT --format
fusionaudio``); ``run --export fusionaudio`` writes them into the output folder at the end of a run.

Example:
    >>> from fusion_datasets.export import export
    >>> export("out", "fusionaudio", "release").written
    {'clips': 4, 'qa_pairs': 8}
    >>> rows = json.loads(Path("release/fusionaudio.json").read_text())
    >>> len(rows), sorted(rows[0])
    (12, ['audio_id', 'dataset', 'id', 'input', 'instruction', 'output', 'task'])
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fusion_datasets.export.base import PartResult
from fusion_datasets.export.lists import ListExporter
from fusion_datasets.files import write_text_atomically
from fusion_datasets.loading import undecoded

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


def _row(audio_id: str | None, instruction: str, dataset: str, task: str, output: str, clip_id: str
         ) -> dict[str, str | None]:
    return {"audio_id": audio_id, "instruction": instruction, "input": "", "dataset": dataset, "task": task,
            "output": output, "id": clip_id}


def audio_file(audio: str | dict | None, audio_root: str | Path | None = None) -> str | None:
    """The path an ``audio`` value names (a path, or ``{bytes, path}``), relative to ``audio_root`` when it
    lies under it; ``None`` when it names none.

    Example:
        >>> audio_file("/data/clips/a/dog.wav", "/data/clips"), audio_file({"bytes": None, "path": "x.wav"})
        ('a/dog.wav', 'x.wav')
    """
    path = audio.get("path") if isinstance(audio, dict) else audio
    if not path or audio_root is None or not os.path.isabs(path):
        return path or None
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(audio_root))  # links kept, not resolved
    return path if relative == ".." or relative.startswith(f"..{os.sep}") else relative


def to_fusionaudio(
    captions_ds: datasets.Dataset, qa_ds: datasets.Dataset | None = None, audio_root: str | Path | None = None
) -> list[dict[str, str | None]]:
    """FusionAudio rows: one per caption of ``captions_ds``, then one per pair of ``qa_ds`` (``qa`` config).

    ``audio_id`` is the clip's audio file (:func:`audio_file`: relative to ``audio_root`` where it lies
    under it; a path outside it stays as it is, and is warned about); ``id`` is the clip's id; ``dataset``
    is its ``source`` where there is one. Clips without a caption (uncertain, failed) are left out.
    """
    captions_ds = undecoded(captions_ds)
    columns = [column for column in ("id", "audio", "caption", "source") if column in captions_ds.column_names]
    clips: dict[str, tuple[str | None, str]] = {}  # id -> (audio file, source)
    rows: list[dict[str, str | None]] = []
    for clip in captions_ds.select_columns(columns):
        audio, source = clips[clip["id"]] = (audio_file(clip.get("audio"), audio_root),
                                             clip.get("source") or DEFAULT_DATASET)
        if clip["caption"]:
            rows.append(_row(audio, CAPTION_INSTRUCTION, source, CAPTION_TASK, clip["caption"], clip["id"]))
    skipped = len(clips) - len(rows)
    if skipped:
        logger.info("left out %d of %d clips without a caption", skipped, len(clips))
    for pair in qa_ds if qa_ds is not None else ():
        audio, source = clips.get(pair["clip_id"], (None, DEFAULT_DATASET))
        rows.append(_row(audio, pair["question"], source, qa_task(pair["qa_type"]), pair["answer"], pair["clip_id"]))
    without = sum(audio is None for audio, _ in clips.values())
    outside = sum(audio is not None and audio_root is not None and os.path.isabs(audio) for audio, _ in clips.values())
    if without:
        logger.warning("%d of %d clips name no audio file: their rows' audio_id is null", without, len(clips))
    if outside:
        logger.warning("%d of %d clips' audio is not under %s: their audio_id stays absolute", outside,
                       len(clips), audio_root)
    return rows


def write_fusionaudio(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as one JSON list (UTF-8, the release files' layout) and return the path."""
    return write_text_atomically(Path(path), json.dumps(list(rows), ensure_ascii=False, indent=2) + "\n")


class FusionAudioExporter(ListExporter):
    """The rows of :func:`to_fusionaudio`, part by part; ``audio_id`` names the clip's file (a FLAC of it where it
    has none of its own: embedded, a segment)."""

    format = "fusionaudio"
    file = "fusionaudio.json"
    head: ClassVar[bytes | None] = b"[\n"

    def items(self, row: dict[str, Any], audio: str, duration: float, pairs: list[dict[str, str]],
              result: PartResult) -> list[dict[str, Any]]:
        result.written["clips"] += 1
        result.written["qa_pairs"] += len(pairs)
        source = row.get("source") or DEFAULT_DATASET
        return [_row(audio, CAPTION_INSTRUCTION, source, CAPTION_TASK, row["caption"], row["id"]),
                *(_row(audio, pair["question"], source, qa_task(pair["qa_type"]), pair["answer"], row["id"])
                  for pair in pairs)]
