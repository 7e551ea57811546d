"""The leakage guard: every clip a benchmark's metadata names, on disk or not, kept out of generated training data.

A benchmark build writes ``benchmark_clips.csv`` (``clip_id,start``): each clip of its metadata by its source's
own key, the YouTube id and start time for AudioSet-derived sets (AudioCaps), else the file stem. Each test or
validation set of a retrieval or QA benchmark is recorded in fusion_datasets' cache (``benchmarks.json``);
the source builders leave out the clips of every recorded benchmark and of each ``--exclude`` folder.

Example:
    >>> clips = BenchmarkClips([("--PJHxphWEs", 30.0), ("river_mouth3", None)])
    >>> [source_key(name) in clips for name in ("Y--PJHxphWEs.wav", "--PJHxphWEs_30_40", "--PJHxphWEs_90_100")]
    [True, True, False]
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path

from fusion_datasets.builders.names import EVALUATION_SPLITS, source_key
from fusion_datasets.builders.report import STATS_FILE
from fusion_datasets.errors import UserError
from fusion_datasets.files import write_text_atomically
from fusion_datasets.runtime import cache_dir

CLIPS_FILE = "benchmark_clips.csv"
Key = tuple[str, float | None]  # (YouTube id or stem, start seconds or None)


class BenchmarkClips:
    """Clips by ``(id, start)``. A side without a start (``Y<ytid>.wav``, a list of ids) matches every start."""

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self.starts: dict[str, set[float | None]] = {}
        for key in keys:
            self.add(key)

    def add(self, key: Key) -> None:
        self.starts.setdefault(key[0], set()).add(key[1])

    def update(self, other: BenchmarkClips) -> None:
        for clip, starts in other.starts.items():
            self.starts.setdefault(clip, set()).update(starts)

    def match(self, key: Key) -> Key | None:
        """The key of these clips that ``key`` names, or None."""
        clip, start = key
        starts = self.starts.get(clip, set())
        if start in starts or None in starts:
            return (clip, start if start in starts else None)
        return (clip, min(starts)) if start is None and starts else None

    def __contains__(self, key: Key) -> bool:
        return self.match(key) is not None

    def __len__(self) -> int:
        return sum(map(len, self.starts.values()))

    def write(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["clip_id", "start"])
            writer.writerows(sorted(((clip, "" if start is None else f"{start:g}")
                                     for clip, starts in self.starts.items() for start in starts)))

    @classmethod
    def read(cls, path: Path) -> BenchmarkClips:
        with open(path, newline="", encoding="utf-8") as handle:
            return cls((row["clip_id"], float(row["start"]) if row["start"] else None)
                       for row in csv.DictReader(handle))


def read_clip_list(path: str | Path) -> BenchmarkClips:
    """A list of clips, one per line: YouTube ids, AudioSet names with times, file names or stems."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--clip-list {path}: no such file (one clip id or file name per line)")
    lines = (line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines())
    return BenchmarkClips(source_key(line) for line in lines if line and not line.startswith("#"))


def benchmark_clip_ids(*benchmarks: str | Path) -> BenchmarkClips:
    """The clips of built benchmarks (their ``benchmark_clips.csv``, else their rows' ``clip_id``).

    Example:
        >>> ("--PJHxphWEs", 30.0) in benchmark_clip_ids("data/audiocaps", "data/clotho-aqa")  # doctest: +SKIP
    """
    import pyarrow.parquet as pq

    clips = BenchmarkClips()
    for folder in map(Path, benchmarks):
        if (folder / CLIPS_FILE).is_file():
            clips.update(BenchmarkClips.read(folder / CLIPS_FILE))
            continue
        files = sorted(folder.rglob("*.parquet"))
        if not files:
            raise UserError(f"exclude: {folder} holds no built benchmark (no {CLIPS_FILE}, no Parquet files)")
        for file in files:
            if "clip_id" not in pq.read_schema(file).names:
                raise UserError(f"exclude: {file} has no clip_id column (not a built benchmark)")
            ids = pq.read_table(file, columns=["clip_id"]).column("clip_id").to_pylist()
            clips.update(BenchmarkClips((clip, None) for clip in ids))
    return clips


def _registry() -> Path:
    return cache_dir() / "benchmarks.json"


def recorded_benchmarks() -> list[Path]:
    """The test and validation sets built on this machine (that still exist): the leakage guard's default."""
    registry = _registry()
    folders = json.loads(registry.read_text(encoding="utf-8")) if registry.is_file() else {}
    return [Path(folder) for folder in sorted(folders) if (Path(folder) / STATS_FILE).is_file()]


def record_benchmark(name: str, output: Path, splits: Iterable[str]) -> bool:
    """Record ``output`` when it holds an evaluation split, else forget it (a train split rebuilt there)."""
    registry = _registry()
    folders = json.loads(registry.read_text(encoding="utf-8")) if registry.is_file() else {}
    evaluation, folder = sorted(set(splits) & set(EVALUATION_SPLITS)), os.path.abspath(output)
    folders.pop(folder, None)
    if evaluation:
        folders[folder] = {"name": name, "splits": evaluation}
    write_text_atomically(registry, json.dumps(folders, indent=2, sort_keys=True))
    return bool(evaluation)
