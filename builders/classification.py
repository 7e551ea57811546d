"""What the classification benchmarks share: native metadata or the FusionAudio eval JSON, and a vocabulary.

Each dataset's builder only says where its metadata is and how a row maps to an audio file, labels and,
for ESC-50 and UrbanSound8K, a cross-validation fold (their protocol: ``fold`` is kept as a column).
A built benchmark has one row per clip (``labels`` is a list: FSD50K is multi-label) and, beside the data,
``vocabulary.csv`` (``index,label``): a given vocabulary file's, else every class of the metadata (present
on disk or not) with the dataset's own ids (ESC-50's ``target``, UrbanSound8K's ``classID``), else by name.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import datasets

from fusion_datasets.builders.base import BuildConfig, FusionBuilder, option
from fusion_datasets.builders.names import media_stem, source_key
from fusion_datasets.builders.readers import read_csv
from fusion_datasets.builders.report import BuildReport

CLASSIFICATION_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "clip_id": datasets.Value("string"),
    "audio": datasets.Audio(),
    "audio_id": datasets.Value("string"),  # the file as the metadata or the eval JSON names it
    "labels": datasets.List(datasets.Value("string")),
})


class Entry(NamedTuple):
    """A metadata row: the audio file (relative to the data folder), its labels, fold and class id."""

    reference: str
    labels: list[str]
    fold: int | None = None
    class_id: int | None = None  # the dataset's own id of the (single) label


def label_key(label: str) -> str:
    """Labels compare without case, underscores or spaces (``Electric_guitar`` = ``electric guitar``)."""
    return re.sub(r"[\s_]+", " ", label).strip().lower()


def read_vocabulary(path: Path, report: BuildReport, encoding: str | None = None) -> list[tuple[int, str]]:
    """``(index, label)`` of a vocabulary CSV (``index,label[,mid]``, with or without a header), in order."""
    rows = read_csv(path, report, fieldnames=("index", "label"), extra_fields=True, encoding=encoding,
                    metadata=False)
    return [(int(row["index"]), row["label"]) for _, row in rows if row["index"].isdigit()]


@dataclass
class ClassificationConfig(BuildConfig):
    vocabulary: str | None = option("a vocabulary CSV (index,label): rows with labels outside it are skipped",
                                    metavar="FILE")


class ClassificationBuilder(FusionBuilder):
    """A classification benchmark from its native metadata or, when the data folder holds a ``*.json`` (or
    ``--data-file`` is one), from the FusionAudio eval JSON (``output``: a label, or ``Labels: a; b``) and the
    vocabulary CSV beside it. Writes ``vocabulary.csv`` (``index,label``) beside the data."""

    BUILDER_CONFIG_CLASS = ClassificationConfig
    DELIMITER: ClassVar[str] = ","
    NATIVE_VOCABULARY: ClassVar[str | None] = None  # the vocabulary file the dataset ships, if any
    VOCABULARY_KEY: ClassVar[str]  # FusionAudio's vocabulary file, lowercase (vocabulary/ESC50.csv: esc50)
    FOLD: ClassVar[re.Pattern[str] | None] = None  # a fold-validated dataset: its fold in an eval JSON path

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.classes: dict[str, int | None] = {}  # every label of the metadata, with its id where it has one

    def entry(self, split: str, row: dict[str, str]) -> Entry:
        """The audio file, labels, fold and class id of a native metadata row."""
        raise NotImplementedError

    def features(self) -> datasets.Features:
        folds = {"fold": datasets.Value("int32")} if self.FOLD else {}
        return datasets.Features({**CLASSIFICATION_FEATURES, **folds})

    def _from_json(self) -> bool:
        file = self.config.data_file
        return file.endswith(".json") if file else any(self.data_dir.glob("*.json"))

    def splits(self) -> list[str]:
        if self._from_json() or self.config.data_file or self.config.split:
            return [self.split_name()]
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

    def _entries(self, split: str) -> Iterator[tuple[str, Entry]]:
        if self._from_json():
            for where, item in self.read_json(self.json_files()[0]):
                text = re.sub(r"^\s*labels?\s*:", "", item["output"], flags=re.IGNORECASE)
                fold = self.FOLD and self.FOLD.search(item["audio_id"].replace("\\", "/"))
                labels = [label.strip() for label in text.split(";") if label.strip()]
                yield where, Entry(item["audio_id"], labels, int(fold[1]) if fold else None)
            return
        path = self.metadata_file(split)
        for line, row in self.read_csv(path, delimiter=self.DELIMITER, columns=self.COLUMNS):
            try:
                yield f"{path}:{line}", self.entry(split, row)
            except ValueError as error:  # a fold or class id that is no number
                self.report.skip("bad_csv_line", f"{path}:{line}", str(error))

    @functools.cached_property
    def _given_vocabulary(self) -> list[tuple[int, str]] | None:
        path = self._vocabulary_file()
        return read_vocabulary(path, self.report, self.config.encoding) if path else None

    def vocabulary(self) -> list[tuple[int, str]]:
        """``(index, label)``: the vocabulary file's, else the metadata's classes by their ids, else by name."""
        if self._given_vocabulary is not None:
            return self._given_vocabulary
        if self.classes and None not in self.classes.values():
            return sorted((index, label) for label, index in self.classes.items())
        return list(enumerate(sorted(self.classes)))

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        given = self._given_vocabulary
        known = {label_key(label): label for _, label in given} if given is not None else None
        seen: set[str] = set()
        for where, entry in self._entries(split):
            self.benchmark_clips.add(source_key(entry.reference))
            labels = entry.labels
            if known is not None:
                unknown = [label for label in labels if label_key(label) not in known]
                if unknown:
                    self.report.skip("unknown_label", where, ", ".join(unknown))
                    continue
                labels = [known[label_key(label)] for label in labels]
            if not labels:
                self.report.skip("empty_field", where, "no label")
                continue
            for label in labels:
                self.classes.setdefault(label, entry.class_id)
            stem = media_stem(entry.reference)
            audio = self.find_audio(entry.reference, where, stem)
            if audio:
                seen.update(labels)
                folds = {"fold": entry.fold} if self.FOLD else {}
                yield {"id": stem, "clip_id": source_key(stem)[0], "audio": audio, "audio_id": entry.reference,
                       "labels": labels, **folds}
        empty = [label for _, label in self.vocabulary() if label not in seen]
        if empty:
            self.report.notes.setdefault("classes_without_clips", {})[split] = empty
            self.report.warn(f"{split}: {len(empty)} of {len(self.vocabulary())} classes have no clips "
                             f"({', '.join(empty[:10])}{', ...' if len(empty) > 10 else ''})")

    def write_extras(self, output: Path) -> None:
        """``vocabulary.csv`` (``index,label``): see :meth:`vocabulary`."""
        with open(output / "vocabulary.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "label"])
            writer.writerows(self.vocabulary())
