"""What the classification benchmarks share: native metadata or the FusionAudio eval JSON, and a vocabulary.

Each dataset's builder only says where its metadata is and how a row maps to an audio file and labels.
A built benchmark has one row per clip (``labels`` is a list: FSD50K is multi-label) and, beside the
data, ``vocabulary.csv`` (``index,label``), the label set the evaluation maps captions to.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets

from fusion_datasets.builders.base import (
    BuildConfig,
    BuildReport,
    FusionBuilder,
    clip_key,
    media_stem,
    read_csv,
    read_json_rows,
)

CLASSIFICATION_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "clip_id": datasets.Value("string"),
    "audio": datasets.Audio(),
    "audio_id": datasets.Value("string"),  # the file as the metadata or the eval JSON names it
    "labels": datasets.List(datasets.Value("string")),
})


def label_key(label: str) -> str:
    """Labels compare without case, underscores or spaces (``Electric_guitar`` = ``electric guitar``)."""
    return re.sub(r"[\s_]+", " ", label).strip().lower()


def read_vocabulary(path: Path, report: BuildReport) -> dict[str, str]:
    """``label_key -> label`` from a vocabulary CSV (``index,label[,mid]``, with or without a header)."""
    rows = read_csv(path, report, fieldnames=("index", "label"), extra_fields=True)
    return {label_key(row["label"]): row["label"] for _, row in rows if row["index"].isdigit()}


@dataclass
class ClassificationConfig(BuildConfig):
    vocabulary: str | None = None  # a vocabulary CSV (index,label); rows with labels outside it are skipped


class ClassificationBuilder(FusionBuilder):
    """A classification benchmark from its native metadata or, when the data folder holds a ``*.json`` (or
    ``--data-file`` is one), from the FusionAudio eval JSON (``output``: a label, or ``Labels: a; b``)."""

    BUILDER_CONFIG_CLASS = ClassificationConfig
    FEATURES = CLASSIFICATION_FEATURES
    METADATA: ClassVar[dict[str, str]]  # split -> metadata file under the data folder
    DELIMITER: ClassVar[str] = ","
    NATIVE_VOCABULARY: ClassVar[str | None] = None  # the vocabulary file the dataset ships, if any
    VOCABULARY_KEY: ClassVar[str]  # FusionAudio's vocabulary file, lowercase (vocabulary/ESC50.csv: esc50)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels_seen: set[str] = set()

    def entry(self, split: str, row: dict[str, str]) -> tuple[str, list[str]]:
        """The audio file (relative to the data folder) and the labels of a native metadata row."""
        raise NotImplementedError

    def _from_json(self) -> bool:
        file = self.config.data_file
        return file.endswith(".json") if file else any(self.data_dir.glob("*.json"))

    def splits(self) -> list[str]:
        if self._from_json() or self.config.data_file:
            return ["test"]
        found = [split for split, name in self.METADATA.items() if (self.data_dir / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{self.NAME}: none of {list(self.METADATA.values())} in {self.data_dir}")
        return found

    def _vocabulary_file(self) -> Path | None:
        if self.config.vocabulary:
            return Path(self.config.vocabulary)
        if not self._from_json():
            native = self.data_dir / self.NATIVE_VOCABULARY if self.NATIVE_VOCABULARY else None
            return native if native and native.is_file() else None
        candidates = sorted(self.data_dir.glob("*.csv")) + sorted(self.data_dir.glob("vocabulary/*.csv"))
        key = self.VOCABULARY_KEY
        matches = (path for path in candidates if key in re.sub(r"\W|_", "", path.stem).lower())
        return next(matches, None)

    def _entries(self, split: str) -> Iterator[tuple[str, str, list[str]]]:
        if self._from_json():
            for where, item in read_json_rows(self.json_files()[0], self.report):
                text = re.sub(r"^\s*labels?\s*:", "", item["output"], flags=re.IGNORECASE)
                yield where, item["audio_id"], [label.strip() for label in text.split(";") if label.strip()]
            return
        path = self.data_file(self.METADATA[split])
        for line, row in read_csv(path, self.report, delimiter=self.DELIMITER):
            try:
                yield f"{path}:{line}", *self.entry(split, row)
            except KeyError as error:
                raise ValueError(f"{path}: no column {error} in the header") from error

    @functools.cached_property
    def _vocabulary(self) -> dict[str, str] | None:
        path = self._vocabulary_file()
        return read_vocabulary(path, self.report) if path else None

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        vocabulary = self._vocabulary
        for where, reference, labels in self._entries(split):
            if vocabulary is not None:
                unknown = [label for label in labels if label_key(label) not in vocabulary]
                if unknown:
                    self.report.skip("unknown_label", where, ", ".join(unknown))
                    continue
                labels = [vocabulary[label_key(label)] for label in labels]
            if not labels:
                self.report.skip("empty_field", where, "no label")
                continue
            stem = media_stem(reference)
            audio = self.find_audio(reference, where, stem)
            if audio:
                self.labels_seen.update(labels)
                yield {"id": stem, "clip_id": clip_key(stem), "audio": audio, "audio_id": reference,
                       "labels": labels}

    def write_extras(self, output: Path) -> None:
        """``vocabulary.csv`` (``index,label`` from 1): the vocabulary file's labels, else the labels seen."""
        labels = list(self._vocabulary.values()) if self._vocabulary is not None else sorted(self.labels_seen)
        with open(output / "vocabulary.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "label"])
            writer.writerows(enumerate(labels, start=1))
