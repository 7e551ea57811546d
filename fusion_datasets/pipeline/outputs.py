"""The output folder in the Hub dataset layout: ``data/<config>/*.parquet`` declared in ``README.md``.

The card (``README.md`` and its plot) is rendered by :func:`fusion_datasets.hub.card.render_card`.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIGS = ("cues", "captions", "qa")


def data_files(config: str) -> str:
    """The glob of ``config``'s Parquet shards, relative to the output folder (the card's ``data_files``)."""
    return f"data/{config}/*.parquet"


def config_files(root: Path, config: str) -> list[Path]:
    """``config``'s finished Parquet shards under ``root``, sorted (temporary files are not among them)."""
    return sorted(root.glob(data_files(config)))


def write_text_atomically(path: Path, text: str | bytes) -> Path:
    """Write ``text`` (or bytes) beside ``path``, then rename it into place: no reader or other rank sees half
    a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    os.replace(temporary, path)
    return path

