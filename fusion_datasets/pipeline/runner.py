"""Run the pipeline shard by shard: each shard's three Parquet files are written atomically, once.

A shard is done when its ``cues`` file exists (it is renamed into place last), so a rerun of the same
command skips done shards and resumes the rest; ``retry_errors`` reruns only the rows of done shards
that carry errors. Shard ``i`` belongs to the process of rank ``i % world_size``, so several processes
(``accelerate launch`` or ``torchrun``) split the work without talking to each other.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from fusion_datasets.experts.chain import ExpertChain
from fusion_datasets.pipeline.config import PipelineConfig, build_steps, dump_config
from fusion_datasets.pipeline.inputs import load_input
from fusion_datasets.pipeline.outputs import CONFIGS, write_readme

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardPaths:
    root: Path
    index: int
    total: int

    def data(self, config: str) -> Path:
        return self.root / "data" / config / f"shard-{self.index:05d}-of-{self.total:05d}.parquet"

    @property
    def stats(self) -> Path:
        return self.root / "stats" / f"shard-{self.index:05d}-of-{self.total:05d}.json"


def _write_atomically(ds: datasets.Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ds.to_parquet(str(temporary))
    os.replace(temporary, path)


def kept_captions(cues: datasets.Dataset) -> datasets.Dataset:
    """The rows of ``cues`` whose caption is certain and passed the CLAP filter (where it ran)."""
    filtered = "clap_keep" in cues.column_names

    def keep(row: dict[str, Any]) -> bool:
        return row.get("caption") is not None and not row.get("caption_uncertain") and (
            not filtered or bool(row["clap_keep"])
        )

    return cues.filter(keep, desc="captions")


def shard_stats(
    cues: datasets.Dataset, captions: datasets.Dataset, qa: datasets.Dataset | None, seconds: float, threshold: float
) -> dict:
    """Counts of one shard (and its CLAP score histogram); :func:`merge_stats` adds shards up."""
    failures = Counter(error["stage"] for errors in cues["errors"] for error in errors)
    columns = cues.column_names
    clap: dict[str, Any] = {}
    if "clap_score" in columns:
        from fusion_datasets.clap.filter import filter_stats

        scored = filter_stats(cues["clap_score"], threshold)
        clap = {"removed_by_filter": scored["removed"], "clap_scored": scored["scored"],
                "clap_histogram": scored["histogram"]["counts"]}
    return {**clap, 
        "clips": cues.num_rows,
        "clips_with_errors": sum(1 for errors in cues["errors"] if errors),
        "errors_by_stage": dict(failures),
        "captioned": sum(1 for caption in cues["caption"] if caption) if "caption" in columns else 0,
        "uncertain": sum(1 for flag in cues["caption_uncertain"] if flag) if "caption_uncertain" in columns else 0,
        "captions": captions.num_rows,
        "qa_pairs": qa.num_rows if qa is not None else 0,
        "seconds": round(seconds, 3),
    }


def merge_stats(shards: list[dict]) -> dict:
    total: dict[str, Any] = {"shards": len(shards), "errors_by_stage": Counter()}
    for stats in shards:
        for key, value in stats.items():
            if key == "errors_by_stage":
                total[key].update(value)
            elif isinstance(value, list):  # a histogram: counts per fixed bin
                total[key] = [a + b for a, b in zip(total.get(key, [0] * len(value)), value)]
            else:
                total[key] = total.get(key, 0) + value
    total["errors_by_stage"] = dict(total["errors_by_stage"])
    scored = total.get("clap_scored", 0)
    total["filter_removal_rate"] = round(total.get("removed_by_filter", 0) / scored, 4) if scored else 0.0
    return total


class PipelineRunner:
    """Runs a :class:`PipelineConfig`; ``run()`` processes this rank's shards and returns the stats.

    Example:
        >>> PipelineRunner(load_config("tiny", ["input.path=clips/"])).run()  # doctest: +SKIP
    """

    def __init__(self, config: PipelineConfig, retry_errors: bool = False, rank: int = 0, world_size: int = 1) -> None:
        self.config = config
        self.retry_errors = retry_errors
        self.rank = rank
        self.world_size = world_size
        self.root = Path(config.output.path)
        self.chain = ExpertChain(build_steps(config))
        self.has_qa = any(step.stage == "qa" for step in self.chain.experts)
        filters = [step for step in self.chain.experts if step.stage == "clap_filter"]
        self.filter_threshold = filters[0].config.threshold if filters else 0.0

    def _map(self, ds: datasets.Dataset, index: int) -> datasets.Dataset:
        return ds.map(self.chain, batched=True, batch_size=self.config.output.batch_size, with_rank=True,
                      features=self.chain.output_features(ds.features), load_from_cache_file=False,
                      desc=f"shard {index}")

    def _retry(self, shard: datasets.Dataset, previous: datasets.Dataset, index: int) -> datasets.Dataset | None:
        failed = [row for row, errors in enumerate(previous["errors"]) if errors]
        if not failed:
            return None
        logger.info("shard %d: retrying %d rows with errors", index, len(failed))
        redone = self._map(shard.select(failed), index).to_list()
        rows = previous.to_list()
        for position, row in zip(failed, redone):
            rows[position] = row
        return datasets.Dataset.from_list(rows, features=previous.features)

    def _process(self, ds: datasets.Dataset, paths: ShardPaths) -> None:
        started = time.perf_counter()
        shard = ds.shard(paths.total, paths.index, contiguous=True)
        if paths.data("cues").exists():
            if not self.retry_errors:
                return
            previous = datasets.Dataset.from_parquet(str(paths.data("cues")))
            cues = self._retry(shard, previous, paths.index)
            if cues is None:
                return
        else:
            cues = self._map(shard, paths.index)
        captions = kept_captions(cues)
        qa = None
        if self.has_qa:
            from fusion_datasets.llm.qa import explode_qa

            qa = explode_qa(captions)
            _write_atomically(qa, paths.data("qa"))
        _write_atomically(captions, paths.data("captions"))
        paths.stats.parent.mkdir(parents=True, exist_ok=True)
        seconds = time.perf_counter() - started
        paths.stats.write_text(json.dumps(shard_stats(cues, captions, qa, seconds, self.filter_threshold)))
        _write_atomically(cues, paths.data("cues"))  # last: its presence marks the shard done

    def run(self) -> dict:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.yaml").write_text(dump_config(self.config))
        ds = load_input(self.config.input)
        total = max(1, math.ceil(ds.num_rows / self.config.output.shard_size))
        for index in range(self.rank, total, self.world_size):
            self._process(ds, ShardPaths(self.root, index, total))
        done = [ShardPaths(self.root, index, total) for index in range(total)]
        stats = merge_stats([json.loads(p.stats.read_text()) for p in done if p.stats.exists()])
        stats["complete"] = all(p.data("cues").exists() for p in done)
        (self.root / "stats.json").write_text(json.dumps(stats, indent=2))
        write_readme(self.root, self.config, [c for c in CONFIGS if c != "qa" or self.has_qa])
        return stats
