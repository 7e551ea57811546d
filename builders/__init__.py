"""In-process dataset builders, one module per source or benchmark (``fusion_datasets.builders``).

``build(name, data_dir, output, **options)`` (and ``fusion-datasets build NAME``) turns files a user has
downloaded into a dataset; :data:`BUILDERS` maps each name to its ``datasets`` builder class.
"""

from fusion_datasets.builders import (  # noqa: F401 - each module registers its builder
    air_bench_chat,
    air_bench_foundation,
    audiocaps,
    audiocaps_qa,
    audioset,
    clotho,
    clotho_aqa,
    esc50,
    folder,
    fsd50k,
    fsdnoisy18k,
    fusionaudio,
    tau_urban,
    urbansound8k,
    wavcaps_qa,
)
from fusion_datasets.builders.base import BUILDERS, build
from fusion_datasets.builders.leakage import BenchmarkClips, benchmark_clip_ids, recorded_benchmarks
from fusion_datasets.builders.names import clip_key, source_key
from fusion_datasets.builders.report import BuildReport

__all__ = ["BUILDERS", "BenchmarkClips", "BuildReport", "benchmark_clip_ids", "build", "clip_key",
           "recorded_benchmarks", "source_key"]
