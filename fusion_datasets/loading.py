"""Loading a dataset with its audio left undecoded: ``{"bytes", "path"}`` references that the steps decode
per batch (:class:`fusion_datasets.media.MediaBatch`), never the whole column up front.
"""

from __future__ import annotations

from typing import Any


def undecoded(table: Any) -> Any:
    """``table`` (a ``datasets.Dataset``) with every ``datasets.Audio`` column cast to ``decode=False``."""
    import datasets

    for column, feature in table.features.items():
        if isinstance(feature, datasets.Audio):
            table = table.cast_column(column, datasets.Audio(decode=False))
    return table


def load_undecoded(path: str, config: str | None = None, split: str = "train") -> Any:
    """``datasets.load_dataset(path, config, split=split)`` (a folder, a file type, a Hub id), undecoded."""
    import datasets

    return undecoded(datasets.load_dataset(path, config, split=split))
