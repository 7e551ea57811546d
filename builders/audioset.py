"""AudioSet: the segment CSVs, the label index and a folder of downloaded clips, as pipeline input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from fusion_datasets.builders.base import ClipIndex, option, register
from fusion_datasets.builders.readers import read_csv
from fusion_datasets.builders.report import BuildReport
from fusion_datasets.builders.sources import SourceBuilder, SourceConfig
from fusion_datasets.fetch.manifest import Availability
from fusion_datasets.labels import audioset_labels

SEGMENT_COLUMNS = ("YTID", "start_seconds", "end_seconds", "positive_labels")


class SegmentRow(NamedTuple):
    """A row of an AudioSet segments CSV: where it is (``file:line``), its video, times and label mids."""

    where: str
    ytid: str
    start: float
    end: float
    mids: list[str]


def read_segments(path: Path, report: BuildReport, encoding: str | None = None) -> Iterator[SegmentRow]:
    """The rows of an AudioSet segments CSV (no header; ``#`` lines skipped); a row whose times are no
    numbers is skipped and reported (``bad_csv_line``)."""
    for line, row in read_csv(path, report, fieldnames=SEGMENT_COLUMNS, encoding=encoding):
        where = f"{path}:{line}"
        try:
            start, end = float(row["start_seconds"]), float(row["end_seconds"])
        except ValueError:
            report.skip("bad_csv_line", where, "start or end is not a number")
            continue
        mids = [mid.strip() for mid in row["positive_labels"].split(",") if mid.strip()]
        yield SegmentRow(where, row["YTID"], start, end, mids)


def label_names(path: Path | None, report: BuildReport, encoding: str | None = None) -> dict[str, str]:
    """AudioSet's label index (``index,mid,display_name``) as mid -> display name; the bundled one without
    ``path``."""
    if path is None:
        return {label.mid: label.display_name for label in audioset_labels()}
    if not path.is_file():
        raise FileNotFoundError(f"audioset: label index {path} not found")
    rows = read_csv(path, report, columns=("mid", "display_name"), encoding=encoding, metadata=False)
    return {row["mid"]: row["display_name"] for _, row in rows}


@dataclass
class AudioSetConfig(SourceConfig):
    labels: str | None = option("the label index (index,mid,display_name; default: class_labels_indices.csv in "
                                "--data-dir, else the bundled one)", metavar="FILE")
    trimmed: bool = option("a file named by YouTube id alone holds the 10 s clip", default=True,
                           off="it is the whole video, cut at each segment's times")


@register("audioset")
class AudioSet(SourceBuilder):
    """AudioSet's segment CSVs (``*segments*.csv`` in the data folder: YTID, start_seconds, end_seconds,
    positive_labels, no header) joined with the downloaded clips under the audio root (``Y<ytid>``, ``<ytid>``
    or ``<ytid>_<start>_<end>``, audio and/or video); ids are ``<ytid>_<start>_<end>``, the human labels
    ``audio_tags`` with score 1.0. Where ``fusion-datasets fetch`` wrote the audio root, a segment its manifest
    says YouTube does not have is skipped as ``unavailable``, not listed as missing."""

    BUILDER_CONFIG_CLASS = AudioSetConfig

    def _label_names(self) -> dict[str, str]:
        path = Path(self.config.labels) if self.config.labels else self.data_dir / "class_labels_indices.csv"
        given = self.config.labels or path.is_file()
        return label_names(path if given else None, self.report, self.config.encoding)

    def clips(self) -> Iterator[dict[str, Any]]:
        names = self._label_names()
        pattern = "*segments*.csv"
        files = [self.data_file(pattern)] if self.config.data_file else sorted(self.data_dir.glob(pattern))
        if not files:
            raise FileNotFoundError(f"audioset: no *segments*.csv in {self.data_dir}; give --data-file")
        index, seen, availability = ClipIndex(self.audio_root), set(), Availability(self.audio_root)
        for path in files:
            for where, ytid, start, end, mids in read_segments(path, self.report, self.config.encoding):
                unknown = [mid for mid in mids if mid not in names]
                if unknown:
                    self.report.skip("unknown_label", where, ", ".join(unknown))
                    continue
                clip_id = f"{ytid}_{start:g}_{end:g}"
                if clip_id in seen:
                    self.report.skip("duplicate_clip", where, clip_id)
                    continue
                seen.add(clip_id)
                found = index.find(ytid, start)
                status = availability.status(ytid, start) if availability else None
                if found is None and status not in (None, "ok"):
                    self.report.skip("unavailable", where, f"{clip_id}: {status}")
                    continue
                if found is None:
                    self.report.missing_clip(clip_id, where, ytid)
                    continue
                audio, video, timed = found
                cut = not (timed or self.config.trimmed)
                yield {"id": clip_id, "audio": str(audio), "video": str(video) if video else None,
                       "start": start if cut else None, "end": end if cut else None, "source": "audioset",
                       "audio_tags": [{"label": names[mid], "score": 1.0} for mid in mids]}
        if availability:
            self.report.notes["availability"] = availability.note()
