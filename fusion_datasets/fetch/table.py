"""The fetched clips as the input ``fusion-datasets run --input DIR`` reads: a ``save_to_disk`` dataset in the
fetch's folder, beside the media files, with the columns of the ``audioset`` builder (labels as human
``audio_tags`` of score 1.0).

Like the source builders, it leaves out the clips of every retrieval and QA test set built on this machine
(the leakage guard) unless told not to; their files stay in the folder, for ``build`` of the benchmark.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import datasets

from fusion_datasets.builders.leakage import benchmark_clip_ids, recorded_benchmarks
from fusion_datasets.builders.names import source_key
from fusion_datasets.builders.sources import SOURCE_FEATURES
from fusion_datasets.fetch.manifest import Record

# what save_to_disk writes for a one-shard Dataset; the folder's media files are left alone
SAVED_FILES = ("data-00000-of-00001.arrow", "dataset_info.json", "state.json")


def _row(folder: Path, record: Record, source: str) -> dict:
    video = folder / record.video if record.video else None
    return {**dict.fromkeys(SOURCE_FEATURES), "id": record.id, "audio": os.path.abspath(folder / record.audio),
            "video": os.path.abspath(video) if video else None, "source": source,
            "audio_tags": [{"label": label, "score": 1.0} for label in record.labels]}


def write_run_input(folder: Path, records: Iterable[Record], source: str, work: Path,
                    leakage_guard: bool = True) -> tuple[int, int]:
    """Write the ``ok`` clips whose files are there as the folder's dataset; ``(clips written, left out by
    the leakage guard)``. Each file is renamed into place, the description last."""
    excluded = benchmark_clip_ids(*recorded_benchmarks()) if leakage_guard else None
    rows, left_out = [], 0
    for record in records:
        if record.status != "ok" or not (folder / record.audio).is_file():
            continue
        if excluded is not None and source_key(record.id) in excluded:
            left_out += 1
        else:
            rows.append(_row(folder, record, source))
    staging = work / "run-input"
    shutil.rmtree(staging, ignore_errors=True)
    datasets.Dataset.from_list(rows, features=SOURCE_FEATURES).save_to_disk(str(staging), num_shards=1)
    for name in SAVED_FILES:
        os.replace(staging / name, folder / name)
    return len(rows), left_out
