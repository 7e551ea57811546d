"""What planning a run costs as the clips grow: ``run tiny --dry-run`` (read the input, check its ids, work out
every part) over Parquet inputs of 10k, 100k and 1M rows and a folder of 100k media files, each in a fresh
process: wall time and peak RSS, and the ratios of one size to the next (issue 33's goals: 1M rows in at most
10 s and 400 MB, a 100k-file folder in at most 5 s, 1M/100k at most 11x).

A Parquet input is converted to Arrow by ``datasets`` the first time it is read (``cold``, a fresh cache) and
memory-mapped from that copy afterwards (``warm``); both are timed. Ids look like AudioSet's
(``Y`` + 11 characters + ``_`` + start), in random order; files are empty (planning reads no audio).

    python benchmarks/planning.py                 # 10k, 100k and 1M rows, a 100k-file folder
    python benchmarks/planning.py --rows 10000 100000 --files 10000
"""

from __future__ import annotations

import argparse
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 100_000  # rows per Parquet row group, as datasets' own shards of a Hub dataset hold about


def audioset_ids(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct AudioSet-like ids, in random order."""
    rng = random.Random(seed)
    letters = string.ascii_letters + string.digits + "-_"
    ids = {f"Y{''.join(rng.choices(letters, k=11))}_{rng.randrange(300):03d}" for _ in range(count)}
    while len(ids) < count:
        ids.add(f"Y{''.join(rng.choices(letters, k=11))}_{rng.randrange(300):03d}")
    ordered = sorted(ids)
    rng.shuffle(ordered)
    return ordered


def write_parquet_input(folder: Path, rows: int) -> Path:
    """A Parquet input of ``rows`` clips: ``id``, ``audio`` (a path), ``source``."""
    ids = audioset_ids(rows)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": ids, "audio": [f"/data/audioset/{clip[1:3]}/{clip}.flac" for clip in ids],
                      "source": ["audioset"] * rows})
    pq.write_table(table, folder / "clips.parquet", row_group_size=ROW_GROUP)
    return folder


def write_media_folder(folder: Path, files: int) -> Path:
    """A folder of ``files`` empty ``.flac`` files, 100 to a subfolder."""
    for index, clip in enumerate(audioset_ids(files)):
        path = folder / f"{index % max(files // 100, 1):04d}" / f"{clip}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return folder


# The child reports its own high-water mark (VmHWM): the rusage of a child forked from this process would start
# from this process' peak, which the generated inputs raise.
_REPORTING = ("import atexit, runpy, sys\n"
              "def report():\n"
              "    peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
              "    print('PEAK', int(peak.split()[1]), file=sys.stderr)\n"
              "atexit.register(report)\n"
              "sys.argv = ['fusion-datasets', *sys.argv[1:]]\n"
              "runpy.run_module('fusion_datasets.cli', run_name='__main__')\n")


def dry_run(input_path: Path, output: Path, cache: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``fusion-datasets run tiny --dry-run`` in a fresh process."""
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", _REPORTING, "run", "tiny", "--input", str(input_path), "--output", str(output),
               "--dry-run"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"the dry run of {input_path} failed:\n{done.stderr}")
    peak = next(line for line in done.stderr.splitlines() if line.startswith("PEAK "))
    return seconds, int(peak.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--files", type=int, nargs="*", default=[100_000], help="media folders of these sizes")
    args = parser.parse_args()
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"{'input':<28}{'seconds':>9}{'peak MB':>9}")
        for rows in args.rows:
            source = write_parquet_input(root / f"parquet-{rows}", rows)
            for kind in ("cold", "warm"):  # the same cache: the second run reads the first one's Arrow copy
                key = f"parquet {rows:,} rows, {kind}"
                results[key] = dry_run(source, root / "out", root / f"cache-{rows}")
                print(f"{key:<28}{results[key][0]:>9.2f}{results[key][1]:>9.0f}")
        for files in args.files:
            source = write_media_folder(root / f"folder-{files}", files)
            key = f"folder {files:,} files"
            results[key] = dry_run(source, root / "out", root / "cache-folder")
            print(f"{key:<28}{results[key][0]:>9.2f}{results[key][1]:>9.0f}")
    sizes = sorted(args.rows)
    for small, large in zip(sizes, sizes[1:]):
        for kind in ("cold", "warm"):
            (time_a, rss_a), (time_b, rss_b) = (results[f"parquet {size:,} rows, {kind}"] for size in (small, large))
            print(f"{large:,}/{small:,} rows, {kind}: time x{time_b / time_a:.1f}, peak RSS x{rss_b / rss_a:.2f} "
                  f"(clips x{large / small:g})")


if __name__ == "__main__":
    main()
