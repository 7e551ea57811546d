"""A run's output folder in the Hub dataset layout: ``data/<config>/*.parquet``, declared in ``README.md``.

Here so that what reads an output (training, the card) need not import the pipeline that writes it.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = ("cues", "captions", "qa")
MANIFEST = "manifest.json"  # the run state: input, plan (each step's own description), parts
# each local model's public name (`local:NAME`) -> its folder on the machine that ran; never uploaded (.cache/)
LOCAL_MODELS = ".cache/local_models.json"


def data_files(config: str) -> str:
    """The glob of ``config``'s Parquet shards, relative to the output folder (the card's ``data_files``)."""
    return f"data/{config}/*.parquet"


def config_files(root: Path, config: str) -> list[Path]:
    """``config``'s finished Parquet shards under ``root``, sorted (temporary files are not among them)."""
    return sorted(root.glob(data_files(config)))
