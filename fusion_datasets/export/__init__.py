"""A run's data in the layouts trainers read (``fusion-datasets export OUT --format F --output DIR``).

- ``webdataset``: LAION-CLAP's ``{split}/{n}.tar`` shards and ``sizes.json`` (:mod:`.webdataset`);
- ``wavcaps``: WavCaps' JSON (:mod:`.wavcaps`);
- ``messages``: ms-swift / LLaMA-Factory SFT JSON lines (:mod:`.messages`);
- ``lhotse``: recordings, supervisions and cuts manifests (:mod:`.lhotse`);
- ``fusionaudio``: FusionAudio's release JSON (:mod:`.fusionaudio`).

Every export reads the output part by part, resumes (``export.json`` records the parts done) and says what it
wrote and skipped (:mod:`.base`).

Example:
    >>> export("out", "messages", "sft").written  # "out": a run's output folder
    {'clips': 4, 'qa_pairs': 8}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_datasets.export.base import ExportSummary, run_export

FORMATS = ("webdataset", "wavcaps", "messages", "lhotse", "fusionaudio")


def exporter_class(format: str) -> type:
    """The exporter of ``format`` (one of :data:`FORMATS`)."""
    if format == "webdataset":
        from fusion_datasets.export.webdataset import WebDatasetExporter as exporter
    elif format == "wavcaps":
        from fusion_datasets.export.wavcaps import WavCapsExporter as exporter
    elif format == "messages":
        from fusion_datasets.export.messages import MessagesExporter as exporter
    elif format == "lhotse":
        from fusion_datasets.export.lhotse import LhotseExporter as exporter
    elif format == "fusionaudio":
        from fusion_datasets.export.fusionaudio import FusionAudioExporter as exporter
    else:
        raise ValueError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    return exporter


def export(root: str | Path, format: str, output: str | Path, **options: Any) -> ExportSummary:
    """Export the run output ``root`` as ``format`` into the folder ``output``; a rerun resumes.

    ``options`` are the format's: ``split``, ``shard_samples``, ``shard_bytes``, ``with_qa`` (webdataset);
    ``audio_root`` (wavcaps, messages, fusionaudio: file paths relative to it).
    """
    return run_export(Path(root), exporter_class(format)(Path(output), **options))
