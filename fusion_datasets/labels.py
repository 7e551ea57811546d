"""The AudioSet ontology's 527 evaluation classes, shipped with the package.

The index comes from Google's AudioSet release (``class_labels_indices.csv``, CC BY-SA 4.0).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class AudioSetLabel:
    index: int
    mid: str
    display_name: str


@functools.cache
def audioset_labels() -> tuple[AudioSetLabel, ...]:
    """The 527 AudioSet classes in index order (``Speech`` is 0, ``Music`` is 137)."""
    text = resources.files("fusion_datasets").joinpath("resources/audioset_labels.csv").read_text()
    reader = csv.DictReader(text.splitlines())
    return tuple(AudioSetLabel(int(row["index"]), row["mid"], row["display_name"]) for row in reader)
