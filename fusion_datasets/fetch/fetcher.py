"""``fusion-datasets fetch``: the media of AudioSet-style segment lists, resumable, with an availability manifest.

Each segment is downloaded with yt-dlp into ``.fetch-work/<id>/``, cut with ffmpeg to a hidden temporary
name, checked (duration, rate, channels) and hashed, and only then renamed to ``<ytid>_<start>.flac`` (and
``.mp4`` with ``video``): a file under a clip's name is always complete. Its record goes to the journal at
once (:mod:`fusion_datasets.fetch.manifest`). A rerun, after a kill too, fetches only the segments with no
record, a retryable failure or a status named in ``retry``; a clip file that lost its record to a kill is
taken as it is. At most ``jobs`` downloads run at once; a rate-limited answer (HTTP 429) pauses every job
with an exponential, jittered backoff.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from fusion_datasets.builders.report import BuildReport
from fusion_datasets.errors import UserError
from fusion_datasets.fetch.cut import CutError, cut, probe_audio, probe_video, sha256
from fusion_datasets.fetch.download import Downloader, FetchFailure
from fusion_datasets.fetch.manifest import (
    STATUSES,
    Journal,
    Record,
    now,
    read_manifest,
    status_counts,
    write_manifest,
)
from fusion_datasets.fetch.segments import Segment, read_segment_files
from fusion_datasets.fetch.table import write_run_input
from fusion_datasets.files import TEMPORARY, temporary_path, write_text_atomically
from fusion_datasets.http_errors import retry_delay

logger = logging.getLogger(__name__)

YOUTUBE = "https://www.youtube.com/watch?v={id}"
SUMMARY_FILE = "fetch_summary.json"
WORK = ".fetch-work"
LOCK = ".fetch.lock"


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch: see ``fusion-datasets fetch --help`` for each field."""

    downloader: Downloader = field(default_factory=Downloader)
    jobs: int = 4
    retry: tuple[str, ...] = ()  # statuses fetched again by a rerun, beyond the retryable failures
    url_template: str = YOUTUBE  # {id}: the YouTube id
    retries: int = 3  # further tries of a download that failed for a passing reason (429, a stall)
    backoff: float = 2.0  # seconds: the scale of the wait before a retry (doubling each time, jittered)
    min_fraction: float = 0.9  # a clip holding less of its segment than this is too-short
    labels: str | None = None  # AudioSet's label index (default: the bundled one)
    leakage_guard: bool = True  # the run input leaves out recorded benchmark clips

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.retries < 0 or self.backoff < 0:
            raise UserError(f"--jobs must be >= 1, --retries and --backoff >= 0 (got {self.jobs}, {self.retries}, "
                            f"{self.backoff})")
        if not 0 <= self.min_fraction <= 1:
            raise UserError(f"--min-fraction must be in [0, 1], got {self.min_fraction}")
        unknown = sorted(set(self.retry) - set(STATUSES[1:]))
        if unknown:
            raise UserError(f"--retry {', '.join(unknown)}: not a status (one of {', '.join(STATUSES[1:])})")
        if "{id}" not in self.url_template:
            raise UserError(f"--url-template {self.url_template!r} must hold {{id}}, where the YouTube id goes")


class Throttle:
    """A pause every job waits out before its next request, set when the platform answers HTTP 429."""

    def __init__(self) -> None:
        self.until, self.lock = 0.0, threading.Lock()

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.until = max(self.until, time.monotonic() + seconds)

    def wait(self) -> None:
        while (left := self.until - time.monotonic()) > 0:
            time.sleep(left)


def _hold(folder: Path) -> IO[str]:
    """An exclusive lock on the fetch's folder while the handle stays open (a killed holder leaves none)."""
    handle = open(folder / LOCK, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"another `fusion-datasets fetch` is writing {folder}: wait for it or stop it") from None
    return handle


def _clear_leftovers(folder: Path) -> None:
    """Remove what a stopped fetch left half done: its downloads and the temporary files of its cuts."""
    shutil.rmtree(folder / WORK, ignore_errors=True)
    for path in folder.iterdir():
        if TEMPORARY.match(path.name):
            path.unlink()


class _SegmentFetcher:
    """Fetches, cuts, checks and names one segment's files; returns its record."""

    def __init__(self, folder: Path, options: FetchOptions) -> None:
        self.folder, self.options, self.throttle = folder, options, Throttle()

    def names(self, segment: Segment) -> tuple[str, str | None]:
        return f"{segment.stem}.flac", f"{segment.stem}.mp4" if self.options.downloader.video else None

    def present(self, segment: Segment) -> bool:
        """Whether the segment's clip files are all there (complete: they only get their names when checked)."""
        return all((self.folder / name).is_file() for name in self.names(segment) if name)

    def adopt(self, segment: Segment, attempts: int) -> Record:
        """The record of clip files written by a fetch killed before it could record them."""
        audio, video = self.names(segment)
        facts = probe_audio(self.folder / audio)
        return Record(segment.id, segment.youtube_id, segment.start, segment.end, "ok", labels=segment.labels,
                      duration=facts.duration, sample_rate=facts.sample_rate, channels=facts.channels,
                      audio=audio, video=video, sha256=sha256(self.folder / audio),
                      video_sha256=sha256(self.folder / video) if video else None, attempts=attempts,
                      fetched_at=now())

    def __call__(self, segment: Segment, attempts: int) -> Record:
        """Fetch ``segment`` (tried ``attempts`` times by earlier runs); a passing failure is tried again."""
        work, url = self.folder / WORK / segment.id, self.options.url_template.format(id=segment.youtube_id)
        record = Record(segment.id, segment.youtube_id, segment.start, segment.end, "failed-other",
                        labels=segment.labels, attempts=attempts)
        tries = 0
        try:
            while True:
                record, tries = replace(record, attempts=record.attempts + 1), tries + 1
                self.throttle.wait()
                try:
                    return self._cut(segment, self.options.downloader(url, work), record)
                except FetchFailure as failure:
                    if not failure.transient or tries > self.options.retries:
                        return replace(record, status=failure.status, error=str(failure), fetched_at=now())
                    self._back_off(segment, failure, tries - 1)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _back_off(self, segment: Segment, failure: FetchFailure, attempt: int) -> None:
        delay = retry_delay(self.options.backoff, attempt)
        if failure.rate_limited:  # every job waits: the platform asks this machine to slow down
            self.throttle.pause(delay)
        logger.info("%s: %s; trying again in %.1f s", segment.id, failure, delay)
        time.sleep(delay)

    def _cut(self, segment: Segment, source: Path, base: Record) -> Record:
        audio, video = self.names(segment)
        temporary = [temporary_path(self.folder / name) for name in (audio, video) if name]
        wanted = segment.end - segment.start
        try:
            facts = probe_audio(cut(source, segment.start, segment.end, temporary[0], "flac"))
            seconds = min(facts.duration, probe_video(cut(source, segment.start, segment.end, temporary[1], "mp4"))
                          if video else facts.duration)
            if seconds < self.options.min_fraction * wanted:
                return replace(base, status="too-short", error=f"the source holds {seconds:.2f} s of the "
                               f"{wanted:g} s segment", duration=seconds, fetched_at=now())
            hashes = [sha256(path) for path in temporary]
            for path, name in reversed(list(zip(temporary, (audio, video)))):  # the audio, that names a clip, last
                os.replace(path, self.folder / name)
        except (CutError, RuntimeError) as error:  # soundfile's LibsndfileError is a RuntimeError
            return replace(base, status="failed-to-cut", error=str(error), fetched_at=now())
        finally:
            for path in temporary:
                path.unlink(missing_ok=True)
        return replace(base, status="ok", duration=facts.duration, sample_rate=facts.sample_rate,
                       channels=facts.channels, audio=audio, video=video, sha256=hashes[0],
                       video_sha256=hashes[1] if video else None, fetched_at=now())


def _plan(segments: Sequence[Segment], records: dict[str, Record], fetcher: _SegmentFetcher,
          retry: Sequence[str]) -> tuple[list[Segment], list[Record]]:
    """The segments to fetch, and the records of clip files found without one (a fetch killed after the rename)."""
    todo, adopted = [], []
    for segment in segments:
        record = records.get(segment.id)
        if record and record.status != "ok" and not record.retryable(retry):
            continue  # known unavailable
        if fetcher.present(segment):
            if not (record and record.status == "ok"):
                adopted.append(fetcher.adopt(segment, record.attempts if record else 0))
            continue
        todo.append(segment)
    return todo, adopted


def fetch(kind: str, segment_files: Sequence[str | Path], output: str | Path,
          options: FetchOptions = FetchOptions()) -> dict[str, Any]:
    """Fetch the segments of ``segment_files`` (CSVs of ``kind``: audioset, audiocaps, vggsound) into ``output``.

    Writes the clips, ``fetch_manifest.parquet``, ``fetch_summary.json`` (returned) and the input ``run``
    reads. Bad CSV rows are skipped and counted in the summary; a list without one usable row is a
    :class:`UserError`.
    """
    report = BuildReport(f"fetch {kind}")
    segments = read_segment_files(kind, segment_files, report, options.labels)
    if not segments:
        first = report.first_problem()
        raise UserError(f"no segment to fetch in {', '.join(map(str, segment_files))}: {report.counts()}"
                        + (f"; the first: {first}" if first else "") + f". Check that the files are {kind}'s "
                        "segment CSVs, with their columns (fetch --help says which)")
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    lock = _hold(folder)
    try:
        _clear_leftovers(folder)
        records = read_manifest(folder)
        fetcher = _SegmentFetcher(folder, options)
        todo, adopted = _plan(segments, records, fetcher, options.retry)
        records.update((record.id, record) for record in adopted)
        logger.info("fetch %s: %d segments, %d to fetch with %d jobs", kind, len(segments), len(todo), options.jobs)
        _run(todo, records, fetcher, folder, options.jobs)
        write_manifest(folder, records)
        clips, left_out = write_run_input(folder, records.values(), kind, folder / WORK, options.leakage_guard)
        shutil.rmtree(folder / WORK, ignore_errors=True)
        summary = _summary(kind, segments, records, report, fetched=len(todo), clips=clips, left_out=left_out)
        write_text_atomically(folder / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        return summary
    finally:
        lock.close()


def _run(todo: Sequence[Segment], records: dict[str, Record], fetcher: _SegmentFetcher, folder: Path,
         jobs: int) -> None:
    """Fetch ``todo`` with ``jobs`` workers, each record journaled as it comes."""
    journal = Journal(folder)
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fetch") as pool:
            futures = [pool.submit(fetcher, segment, getattr(records.get(segment.id), "attempts", 0))
                       for segment in todo]
            for done, future in enumerate(as_completed(futures), 1):
                record = future.result()
                records[record.id] = record
                journal.append(record)
                logger.log(logging.INFO if record.status == "ok" else logging.WARNING, "%d/%d %s: %s%s", done,
                           len(todo), record.id, record.status, f" ({record.error})" if record.error else "")
    finally:
        journal.close()


def _summary(kind: str, segments: Sequence[Segment], records: dict[str, Record], report: BuildReport,
             **counts: int) -> dict[str, Any]:
    """Counts by status of the listed segments (as papers report availability), and the CSV rows skipped."""
    listed = status_counts(records[segment.id] for segment in segments)
    return {"kind": kind, "segments": len(segments), "by_status": listed,
            "available": round(listed["ok"] / len(segments), 4), **counts,
            "csv": {"read": dict(report.read), "skipped": dict(report.skipped), "problems": report.problems,
                    "warnings": report.warnings}}
