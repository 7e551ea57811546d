"""The availability manifest of a fetch: one record per segment, what became of it and what was written.

``fetch_manifest.parquet`` holds the records of the last finished (or stopped) fetch; each segment finished
since is appended to ``.fetch_journal.jsonl`` at once, so a killed fetch loses nothing it completed. Reading
merges the two (a journal line cut short by a kill is ignored); writing the Parquet file folds the journal in.
No record holds a cookie, a proxy or any option of the fetch: only what the platform answered.

Example:
    >>> record = Record("--PJHxphWEs_30_40", "--PJHxphWEs", 30.0, 40.0, "removed", error="Video unavailable")
    >>> status_counts([record])["removed"], record.retryable()
    (1, False)
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fusion_datasets.files import temporary_path

logger = logging.getLogger(__name__)

MANIFEST_FILE = "fetch_manifest.parquet"
JOURNAL_FILE = ".fetch_journal.jsonl"
# ok: the clip is written; the next five say the platform has no usable media for the segment (a rerun
# leaves them unless --retry names them); a failure to cut or any other failure is tried again by a rerun
STATUSES = ("ok", "unavailable", "private", "removed", "geo-blocked", "too-short", "failed-to-cut", "failed-other")
RETRYABLE = frozenset({"failed-to-cut", "failed-other"})

SCHEMA = pa.schema([
    ("id", pa.string()), ("youtube_id", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
    ("labels", pa.list_(pa.string())),  # the CSV's labels (AudioSet's by name), for the run's input
    ("status", pa.string()), ("error", pa.string()),
    ("duration", pa.float64()), ("sample_rate", pa.int32()), ("channels", pa.int32()),
    ("audio", pa.string()), ("video", pa.string()),  # file names in the fetch's folder
    ("sha256", pa.string()), ("video_sha256", pa.string()),
    ("attempts", pa.int32()),  # fetches tried over every run
    ("fetched_at", pa.string()),  # ISO 8601, UTC
])


def now() -> str:
    """The time a record is made, ISO 8601 in UTC to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Record:
    """What became of one segment (see :data:`STATUSES`); the file fields are set when it is ``ok``."""

    id: str
    youtube_id: str
    start: float
    end: float
    status: str
    error: str | None = None
    labels: tuple[str, ...] = ()
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio: str | None = None
    video: str | None = None
    sha256: str | None = None
    video_sha256: str | None = None
    attempts: int = 1
    fetched_at: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels or ()))  # a list when read back
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    def retryable(self, retry: Iterable[str] = ()) -> bool:
        """Whether a rerun fetches the segment again: a retryable failure, or a status in ``retry``."""
        return self.status != "ok" and (self.status in RETRYABLE or self.status in set(retry))


def _journal_records(path: Path) -> Iterable[Record]:
    names = {item.name for item in fields(Record)}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                values = json.loads(line)
                yield Record(**{key: value for key, value in values.items() if key in names})
            except (ValueError, TypeError):  # the last line of a killed fetch, cut short
                logger.warning("%s:%d: an incomplete record is ignored (its segment is fetched again)", path, number)


def read_manifest(folder: str | Path) -> dict[str, Record]:
    """The records of the fetch in ``folder`` by segment id: the manifest's, then the journal's (newer)."""
    folder = Path(folder)
    records: dict[str, Record] = {}
    if (folder / MANIFEST_FILE).is_file():
        names = {item.name for item in fields(Record)}
        for row in pq.read_table(folder / MANIFEST_FILE).to_pylist():
            records[row["id"]] = Record(**{key: value for key, value in row.items() if key in names})
    if (folder / JOURNAL_FILE).is_file():
        records.update((record.id, record) for record in _journal_records(folder / JOURNAL_FILE))
    return records


class Journal:
    """Appends each finished segment's record to the journal at once, flushed to disk."""

    def __init__(self, folder: Path) -> None:
        self.handle = open(folder / JOURNAL_FILE, "a", encoding="utf-8")

    def append(self, record: Record) -> None:
        self.handle.write(json.dumps(asdict(record)) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def write_manifest(folder: Path, records: dict[str, Record]) -> Path:
    """Write every record to ``fetch_manifest.parquet`` (atomically, sorted by id), then drop the journal."""
    path = folder / MANIFEST_FILE
    rows = [asdict(records[key]) for key in sorted(records)]  # labels as tuples: Arrow lists
    temporary = temporary_path(path)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), temporary)
    os.replace(temporary, path)
    (folder / JOURNAL_FILE).unlink(missing_ok=True)
    return path


def status_counts(records: Iterable[Record]) -> dict[str, int]:
    """Segments by status, every status named (0 where none), in :data:`STATUSES` order."""
    counts = Counter(record.status for record in records)
    return {status: counts[status] for status in STATUSES}


class Availability:
    """What the fetch that wrote a folder found of each segment, for the builders reading that folder: each
    clip's status by ``(YouTube id, start)`` and the counts of those asked about (once per clip)."""

    def __init__(self, folder: str | Path) -> None:
        records = read_manifest(folder).values()
        self.path = Path(folder) / MANIFEST_FILE
        self.statuses = {(record.youtube_id, record.start): record.status for record in records}
        self.counts: Counter = Counter()

    def __bool__(self) -> bool:
        return bool(self.statuses)

    def status(self, youtube_id: str, start: float | None) -> str | None:
        """The segment's status (``None``: the fetch did not list it), counted."""
        status = self.statuses.get((youtube_id, start))
        self.counts[status or "not_in_manifest"] += 1
        return status

    def note(self) -> dict:
        """For ``stats.json``: the manifest and the benchmark's clips by status."""
        return {"manifest": str(self.path), "by_status": dict(self.counts)}
