"""The ``webdataset`` export's cost, on a run output of short synthetic clips (made here, no model runs):

1. ``throughput``: clips/s of ``export --format webdataset`` against a plain loop that writes the same files
   (``soundfile`` reads each clip, the same resampling to 48 kHz, ``soundfile`` writes FLAC, ``tarfile`` shards);
2. ``rss``: the export's peak RSS on 1,000 and on 10,000 clips (a fresh process each), and their ratio (the
   export streams part by part: the goal is at most 1.15).

    python benchmarks/export.py throughput rss --clips 1000 --large 10000
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile

from fusion_datasets.export import export
from fusion_datasets.media import Waveform, resample
from fusion_datasets.testing import media

PART = 256  # clips per part, the runner's default
RATE = 16000


def make_output(root: Path, clips: int, seconds: float) -> Path:
    """A run output's ``captions`` parts: ``clips`` rows naming distinct short wav files under ``root/clips``."""
    (root / "clips").mkdir(parents=True, exist_ok=True)
    (root / "out" / "data" / "captions").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for start in range(0, clips, PART):
        ids = [f"clip-{index:06d}" for index in range(start, min(start + PART, clips))]
        paths = []
        for clip in ids:
            path = root / "clips" / f"{clip}.wav"
            soundfile.write(path, (media.noise(seconds, RATE) * rng.uniform(0.2, 1.0)).T, RATE)
            paths.append(str(path))
        pq.write_table(pa.table({"id": ids, "audio": paths, "caption": [f"Noise, clip {clip}." for clip in ids],
                                 "audio_tags": [[{"label": "Noise", "score": 0.9}]] * len(ids)}),
                       root / "out" / "data" / "captions" / f"part-{start:08d}.parquet")
    return root / "out"


def plain_tar(output: Path, target: Path, shard_samples: int = 1000) -> None:
    """The same shards without the toolkit: soundfile, the same resampling, tarfile."""
    target.mkdir(parents=True)
    rows = [row for path in sorted((output / "data" / "captions").glob("*.parquet"))
            for row in pq.read_table(path).to_pylist()]
    for shard in range(0, len(rows), shard_samples):
        with tarfile.open(target / f"{shard // shard_samples}.tar", "w") as tar:
            for row in rows[shard:shard + shard_samples]:
                samples, rate = soundfile.read(row["audio"], dtype="float32", always_2d=True)
                audio = resample(Waveform(samples.T, rate), 48000)
                buffer = io.BytesIO()
                soundfile.write(buffer, audio.T, 48000, format="FLAC", subtype="PCM_16")
                text = json.dumps({"text": row["caption"], "tag": ["Noise"]}).encode()
                for name, data in ((f"{row['id']}.flac", buffer.getvalue()), (f"{row['id']}.json", text)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def throughput(clips: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        warm = make_output(Path(folder) / "warm", 32, seconds)  # imports and kernels of both, before timing
        export(warm, "webdataset", Path(folder) / "warm" / "wds")
        plain_tar(warm, Path(folder) / "warm" / "plain")
        output = make_output(Path(folder), clips, seconds)
        started = time.perf_counter()
        export(output, "webdataset", Path(folder) / "wds")
        ours = time.perf_counter() - started
        started = time.perf_counter()
        plain_tar(output, Path(folder) / "plain")
        plain = time.perf_counter() - started
    return {"clips": clips, "webdataset_clips_per_s": round(clips / ours, 1),
            "plain_clips_per_s": round(clips / plain, 1)}


def peak_rss(clips: int, seconds: float) -> float:
    """The peak RSS in MiB of a fresh process that exports ``clips`` clips (the output is made beforehand)."""
    with tempfile.TemporaryDirectory() as folder:
        output = make_output(Path(folder), clips, seconds)
        child = subprocess.run([sys.executable, __file__, "_export", str(output), str(Path(folder) / "wds")],
                               check=True, capture_output=True, text=True)
        return json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    if sys.argv[1:2] == ["_export"]:  # the measured child of `rss`: OUTPUT FOLDER
        export(sys.argv[2], "webdataset", sys.argv[3])
        print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="+", choices=["throughput", "rss"])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000, help="rss: the larger dataset")
    parser.add_argument("--seconds", type=float, default=1.0, help="each clip's length")
    args = parser.parse_args()
    if "throughput" in args.what:
        print(json.dumps(throughput(args.clips, args.seconds)))
    if "rss" in args.what:
        small, large = peak_rss(args.clips, args.seconds), peak_rss(args.large, args.seconds)
        print(json.dumps({f"peak_rss_mib_{args.clips}": round(small, 1),
                          f"peak_rss_mib_{args.large}": round(large, 1), "ratio": round(large / small, 3)}))


if __name__ == "__main__":
    main()
