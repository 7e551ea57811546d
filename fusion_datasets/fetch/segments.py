"""The segments a fetch asks for, read from the CSVs AudioSet, AudioCaps and VGGSound publish.

- ``audioset``: ``YTID, start_seconds, end_seconds, positive_labels`` (no header, ``#`` lines), labels
  are mids named through AudioSet's label index;
- ``audiocaps``: a header naming ``youtube_id`` and ``start_time`` (one line per caption); 10 s clips;
- ``vggsound``: ``youtube_id, start_seconds, label, split`` (no header); 10 s clips, the label kept.

Bad rows (a time that is no number, an id that is not a YouTube id, a broken line) are skipped and counted
in the report with their ``file:line``; a segment given twice (AudioCaps: once per caption) is fetched once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fusion_datasets.builders.audioset import label_names, read_segments
from fusion_datasets.builders.readers import read_csv
from fusion_datasets.builders.report import BuildReport
from fusion_datasets.errors import UserError

KINDS = ("audioset", "audiocaps", "vggsound")
CLIP_SECONDS = 10.0  # AudioCaps and VGGSound give a start; their clips are AudioSet's 10 s
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")  # also keeps file names inside the output folder


@dataclass(frozen=True)
class Segment:
    """A part of a YouTube video to fetch, with the labels its CSV gives (AudioSet, VGGSound)."""

    youtube_id: str
    start: float
    end: float
    labels: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """``<ytid>_<start>_<end>``, as the ``audioset`` builder names clips."""
        return f"{self.youtube_id}_{self.start:g}_{self.end:g}"

    @property
    def stem(self) -> str:
        """The clip's file name without its suffix: ``<ytid>_<start>``, as AudioSet downloads are named."""
        return f"{self.youtube_id}_{self.start:g}"


def _rows(kind: str, path: Path, report: BuildReport,
          labels: Path | None) -> Iterator[tuple[str, str, str, str | None, tuple[str, ...]]]:
    """``(file:line, ytid, start, end or None, labels)`` as written in the CSV."""
    if kind == "audioset":
        names, unknown = label_names(labels, report), set()
        for where, ytid, start, end, mids in read_segments(path, report):
            unknown.update(mid for mid in mids if mid not in names)
            yield where, ytid, str(start), str(end), tuple(names.get(mid, mid) for mid in mids)
        if unknown:
            report.warn(f"{path}: {len(unknown)} labels are not in the label index and are kept as their mids "
                        f"({', '.join(sorted(unknown)[:5])}); give the release's index with --labels")
    elif kind == "audiocaps":
        for line, row in read_csv(path, report, columns=("youtube_id", "start_time"), extra_fields=True):
            yield f"{path}:{line}", row["youtube_id"], row["start_time"], None, ()
    else:
        columns = ("youtube_id", "start_seconds", "label", "split")
        for line, row in read_csv(path, report, fieldnames=columns, extra_fields=True):
            yield f"{path}:{line}", row["youtube_id"], row["start_seconds"], None, (row["label"],)


def read_segment_files(kind: str, paths: Sequence[str | Path], report: BuildReport,
                       labels: str | Path | None = None) -> list[Segment]:
    """The segments of ``paths`` (CSVs of ``kind``), each once, in the order first given."""
    if kind not in KINDS:
        raise UserError(f"unknown segment list {kind!r}; choose one of {', '.join(KINDS)}")
    segments: dict[str, Segment] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"--segments {path}: no such file; give the {kind} CSV that lists the segments")
        for where, ytid, start, end, names in _rows(kind, path, report, Path(labels) if labels else None):
            if not _YOUTUBE_ID.fullmatch(ytid):
                report.skip("bad_youtube_id", where, repr(ytid))
                continue
            try:
                begin = float(start)
                finish = float(end) if end is not None else begin + CLIP_SECONDS
            except ValueError:
                report.skip("bad_csv_line", where, f"start {start!r} is not a number")
                continue
            if not 0 <= begin < finish:
                report.skip("bad_csv_line", where, f"the segment [{begin:g}, {finish:g}] is empty")
                continue
            segment = Segment(ytid, begin, finish, names)
            segments.setdefault(segment.id, segment)  # AudioCaps lists a clip once per caption
    return list(segments.values())
