"""The output folder in the Hub dataset layout: ``data/<config>/*.parquet`` declared in ``README.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIGS = ("cues", "captions", "qa")


def write_readme(root: Path, config: Any, configs: list[str]) -> Path:
    """A README whose YAML ``configs`` make ``load_dataset(root, "captions")`` work (the card issue renders more)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        configs=[{"config_name": name, "data_files": f"data/{name}/*.parquet"} for name in configs],
        task_categories=["audio-classification", "text-to-audio"],
        tags=["audio", "audio-captioning", "fusion-datasets"],
    )
    card = DatasetCard.from_template(
        data, template_str="---\n{{ card_data }}\n---\n\n# {{ name }}\n\nAudio captions made by fusion_datasets "
        "(the FusionAudio pipeline), with the `{{ name }}` config.\n", name=config.name,
    )
    path = root / "README.md"
    card.save(path)
    return path
