"""What a run writes into its output folder (the layout: :mod:`fusion_datasets.layout`).

The card (``README.md`` and its plot) is rendered by :func:`fusion_datasets.pipeline.card.render_card`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from fusion_datasets.clip_audio import typed_audio
from fusion_datasets.layout import CARD, CONFIGS, MANIFEST, config_files
from fusion_datasets.llm.qa import FILTER_DECISION, explode_qa
from fusion_datasets.steps import Step

EXPORT = "fusionaudio.json"  # --export fusionaudio
CARD_SOURCES = ("stats.json", "config.yaml", MANIFEST)  # what the card is rendered from, beside the data


def kept_captions(cues: datasets.Dataset) -> datasets.Dataset:
    """The rows of ``cues`` whose caption is certain and passed the CLAP filter (where it ran).

    Only those columns are read: the audio is neither decoded nor loaded.
    """
    columns = [name for name in ("caption", "caption_uncertain", FILTER_DECISION) if name in cues.column_names]

    def keep(*values: Any) -> bool:
        row = dict(zip(columns, values))
        kept = row.get(FILTER_DECISION, True)
        return row["caption"] is not None and not row.get("caption_uncertain") and bool(kept)

    return cues.filter(keep, input_columns=columns, desc="captions")


def derived_configs(cues: datasets.Dataset) -> dict[str, datasets.Dataset]:
    """The configs made from a part's ``cues``: ``captions`` where there are captions, ``qa`` where QA pairs.

    The captions' ``audio`` is a ``datasets.Audio`` column, which ``load_dataset`` decodes as it is (the clips of
    ``cues`` include those that cannot be decoded, which would stop a reader that iterates them).
    """
    configs = {}
    if "caption" in cues.column_names:
        configs["captions"] = typed_audio(kept_captions(cues))
        if "qa_pairs" in cues.column_names:
            configs["qa"] = explode_qa(configs["captions"])
    return configs


def data_counts(steps: Sequence[Step], cues: datasets.Dataset, captions: datasets.Dataset | None,
                qa: datasets.Dataset | None) -> dict:
    """What a part's data holds: clips, errors by stage, captions and QA pairs kept, and what each of the plan's
    ``steps`` counts of its own columns (:meth:`~fusion_datasets.steps.Step.data_counts`)."""
    errors = cues["errors"]
    counts: dict[str, Any] = {
        "clips": cues.num_rows,
        "clips_with_errors": sum(1 for row in errors if row),
        "errors_by_stage": dict(Counter(error["stage"] for row in errors for error in row or [])),
        "captions": captions.num_rows if captions is not None else 0,
        "qa_pairs": qa.num_rows if qa is not None else 0,
    }
    for step in steps:
        counts.update(step.data_counts(cues))
    return counts


def load_output_config(root: Path, config: str) -> datasets.Dataset | None:
    """The rows of one config (``cues``, ``captions``, ``qa``) of an output folder, or ``None``."""
    files = [str(path) for path in config_files(root, config)]
    return datasets.Dataset.from_parquet(files) if files else None


def export_fusionaudio(root: Path, audio_root: str | None = None) -> Path:
    """Write ``fusionaudio.json`` (the FusionAudio release format) from an output's captions and QA pairs;
    ``audio_id`` is each clip's audio file, relative to ``audio_root`` when given."""
    from fusion_datasets.export.fusionaudio import to_fusionaudio, write_fusionaudio

    captions = load_output_config(root, "captions")
    if captions is None:
        raise ValueError(f"{root} has no captions to export (data/captions/ is empty)")
    path = root / EXPORT
    write_fusionaudio(to_fusionaudio(captions, load_output_config(root, "qa"), audio_root), path)
    return path


def publish_view(root: Path, mode: str | None = None) -> Path:
    """The folder a push of the output ``root`` uploads, as ``mode`` (default: the run's ``output.publish_audio``)
    publishes its audio (:mod:`fusion_datasets.hub.publish`): ``root`` itself under ``auto`` (checked: its rows
    must name no local file), else its committed state rewritten into ``root/.cache/publish/<mode>/``, with
    the card rendered from the rewritten data (parts no longer committed leave the view)."""
    from fusion_datasets.hub.publish import published_files
    from fusion_datasets.pipeline.card import PLOT, render_card
    from fusion_datasets.pipeline.config import load_run_config

    mode = mode or load_run_config(root).output.publish_audio
    data = [path for config in CONFIGS for path in config_files(root, config)]
    sides = [root / name for name in (CARD, *CARD_SOURCES, PLOT) if (root / name).is_file()]
    folder, files = published_files(root, [*data, *sides], mode)
    if folder != root:
        kept = set(files)
        for stale in (folder / "data").glob("*/*.parquet"):
            if stale not in kept:
                stale.unlink()
        if all((folder / name).is_file() for name in CARD_SOURCES):
            render_card(folder, load_run_config(folder))
    return folder
