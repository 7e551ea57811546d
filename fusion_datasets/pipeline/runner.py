"""Run the pipeline shard by shard: each shard's three Parquet files are written atomically, once.

A shard is done when its ``cues`` file exists (it is renamed into place last), so a rerun of the same
command skips done shards and resumes the rest; ``retry_errors`` reruns only the rows of done shards
that carry errors. Shard ``i`` belongs to the process of rank ``i % world_size``, so several processes
(``accelerate launch`` or ``torchrun``) split the work without talking to each other; a file lock
only makes them take turns writing ``stats.json`` and the card.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.utils import tqdm

from fusion_datasets.experts.chain import STAGE_SECONDS, ExpertChain
from fusion_datasets.hub.card import PLOT, render_card
from fusion_datasets.hub.push import HubPublisher, parse_hub_output, staging_dir
from fusion_datasets.pipeline.config import OutputConfig, PipelineConfig, build_steps, dump_config
from fusion_datasets.pipeline.inputs import load_input
from fusion_datasets.pipeline.outputs import CONFIGS, config_files, write_text_atomically
from fusion_datasets.runtime import process_rank

logger = logging.getLogger(__name__)

EXPORT = "fusionaudio.json"  # --export fusionaudio


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

    @property
    def done(self) -> bool:
        return self.data("cues").exists()

    def files(self) -> list[Path]:
        """The shard's finished files: its Parquet file of each config, then its stats."""
        return [path for path in (*(self.data(config) for config in CONFIGS), self.stats) if path.exists()]


def _remove_stale_temporaries(root: Path, shards: list[ShardPaths]) -> None:
    """Delete the half-written files (``.shard-*.tmp``) that a killed run left for ``shards``.

    Only this rank's shards: another rank may be writing its own temporary files right now.
    """
    names = {paths.stats.stem for paths in shards}  # shard-00001-of-00004
    for stale in [*(root / "data").glob("*/.shard-*.tmp"), *(root / "stats").glob(".shard-*.tmp")]:
        if stale.name[1:].split(".")[0] in names:
            logger.info("removing %s, left by an interrupted run", stale)
            stale.unlink(missing_ok=True)


def shard_count(num_rows: int, output: OutputConfig) -> int:
    """The number of shards for ``num_rows`` clips: ``num_shards``, else one per ``shard_size`` clips."""
    if output.num_shards:
        return min(output.num_shards, max(1, num_rows))
    return max(1, math.ceil(num_rows / output.shard_size))


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """One process of a run at a time: the ranks take turns to write ``stats.json`` and the card."""
    lock = root / ".cache" / "run.lock"  # .cache/ is never uploaded (see hub.push.IGNORED)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield


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


def _embedded(audio: str | dict | None) -> dict | None:
    reference = audio if isinstance(audio, dict) or audio is None else {"bytes": None, "path": audio}
    if reference is None or reference["bytes"] is not None or not reference["path"]:
        return reference
    path = Path(reference["path"])
    try:
        return {"bytes": path.read_bytes(), "path": path.name}
    except OSError as error:  # the row's decode error already says why; keep the reference
        logger.warning("cannot embed %s: %s", path, error)
        return reference


def embed_audio(ds: datasets.Dataset) -> datasets.Dataset:
    """``ds`` with each audio file embedded as bytes in a ``datasets.Audio`` column (``--embed-audio``)."""
    features = datasets.Features({**ds.features, "audio": datasets.Audio()})
    return ds.map(lambda batch: {"audio": [_embedded(audio) for audio in batch["audio"]]}, batched=True,
                  batch_size=16, features=features, desc="embedding audio")


def load_output_config(root: Path, config: str) -> datasets.Dataset | None:
    """The rows of one config (``cues``, ``captions``, ``qa``) of an output folder, or ``None``."""
    files = [str(path) for path in config_files(root, config)]
    return datasets.Dataset.from_parquet(files) if files else None


def export_fusionaudio(root: Path) -> Path:
    """Write ``fusionaudio.json`` (the FusionAudio release format) from an output's captions and QA pairs."""
    from fusion_datasets.llm.export import to_fusionaudio, write_fusionaudio

    captions = load_output_config(root, "captions")
    if captions is None:
        raise ValueError(f"{root} has no captions to export (data/captions/ is empty)")
    path = root / EXPORT
    write_fusionaudio(to_fusionaudio(captions, load_output_config(root, "qa")), path)
    return path


def _llm_usage(cues: datasets.Dataset) -> dict[str, dict[str, int]]:
    """Tokens, server retries and re-asks per LLM stage, summed over the rows of ``cues``."""
    from fusion_datasets.llm.step import LLM_USAGE, USAGE_FIELDS

    if LLM_USAGE not in cues.column_names:
        return {}
    totals: dict[str, Counter] = {}
    for entries in cues[LLM_USAGE]:
        for entry in entries or []:
            totals.setdefault(entry["stage"], Counter()).update({name: entry[name] for name in USAGE_FIELDS})
    return {stage: dict(counts) for stage, counts in totals.items()}


def shard_stats(
    cues: datasets.Dataset,
    captions: datasets.Dataset,
    qa: datasets.Dataset | None,
    stage_seconds: dict[str, float],
    threshold: float,
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
    return {
        **clap,
        "clips": cues.num_rows,
        "clips_with_errors": sum(1 for errors in cues["errors"] if errors),
        "errors_by_stage": dict(failures),
        "captioned": sum(1 for caption in cues["caption"] if caption) if "caption" in columns else 0,
        "uncertain": sum(1 for flag in cues["caption_uncertain"] if flag) if "caption_uncertain" in columns
        else 0,
        "captions": captions.num_rows,
        "qa_pairs": qa.num_rows if qa is not None else 0,
        "seconds_by_stage": dict(stage_seconds),
        "llm_usage": _llm_usage(cues),
    }


def _add(total: Any, value: Any) -> Any:
    """``total + value`` for stats: numbers add, lists add per bin (histograms), dicts add per key."""
    if isinstance(value, dict):
        total = dict(total or {})
        return {**total, **{key: _add(total.get(key), item) for key, item in value.items()}}
    if isinstance(value, list):
        return [a + b for a, b in zip(total or [0] * len(value), value)]
    return value if total is None else total + value


def merge_stats(shards: list[dict]) -> dict:
    """The stats of several shards added up, with the filter's removal rate over them all."""
    total: dict[str, Any] = {"shards": len(shards)}
    for stats in shards:
        total = _add(total, stats)
    total.setdefault("errors_by_stage", {})
    seconds = total.get("seconds_by_stage", {})
    total["seconds_by_stage"] = {stage: round(value, 3) for stage, value in seconds.items()}
    scored = total.get("clap_scored", 0)
    total["filter_removal_rate"] = round(total.get("removed_by_filter", 0) / scored, 4) if scored else 0.0
    return total


class PipelineRunner:
    """Runs a :class:`PipelineConfig`; ``run()`` processes this rank's shards and returns the stats.

    Example:
        >>> PipelineRunner(load_config("tiny", ["input.path=clips/"])).run()  # doctest: +SKIP
    """

    def __init__(self, config: PipelineConfig, retry_errors: bool = False, rank: int | None = None,
                 world_size: int | None = None) -> None:
        found = process_rank()  # RANK / WORLD_SIZE of torchrun and `accelerate launch`, else 0 of 1
        self.config = config
        self.retry_errors = retry_errors
        self.rank = found.rank if rank is None else rank
        self.world_size = found.world_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got {self.rank} and {self.world_size}")
        self.repo_id = parse_hub_output(config.output.path)  # hf://datasets/ORG/NAME: push as shards finish
        self.root = staging_dir(self.repo_id) if self.repo_id else Path(config.output.path)
        self.chain = ExpertChain(build_steps(config), record_timings=True)
        self.has_qa = any(step.stage == "qa" for step in self.chain.experts)
        filters = [step for step in self.chain.experts if step.stage == "clap_filter"]
        self.filter_threshold = filters[0].config.threshold if filters else 0.0

    def _map(self, ds: datasets.Dataset, index: int) -> tuple[datasets.Dataset, Counter]:
        """``ds`` through every step, and the seconds spent in each stage."""
        output = self.config.output
        mapped = ds.map(self.chain, batched=True, batch_size=output.batch_size, with_rank=True,
                        num_proc=output.num_proc if output.num_proc and output.num_proc > 1 else None,
                        features=self.chain.output_features(ds.features), load_from_cache_file=False,
                        desc=f"shard {index}: {', '.join(step.stage for step in self.chain.experts)}")
        seconds: Counter = Counter()
        for timings in mapped[STAGE_SECONDS]:
            seconds.update({timing["stage"]: timing["seconds"] for timing in timings})
        return mapped.remove_columns(STAGE_SECONDS), seconds

    def _retry(
        self, shard: datasets.Dataset, previous: datasets.Dataset, index: int
    ) -> tuple[datasets.Dataset | None, Counter]:
        failed = [row for row, errors in enumerate(previous["errors"]) if errors]
        if not failed:
            return None, Counter()
        logger.info("shard %d: retrying %d rows with errors", index, len(failed))
        redone, seconds = self._map(shard.select(failed), index)
        rows = previous.to_list()
        for position, row in zip(failed, redone.to_list()):
            rows[position] = row
        return datasets.Dataset.from_list(rows, features=previous.features), seconds

    def _process(self, ds: datasets.Dataset, paths: ShardPaths) -> None:
        shard = ds.shard(paths.total, paths.index, contiguous=True)
        if paths.data("cues").exists():
            if not self.retry_errors:
                return
            previous = datasets.Dataset.from_parquet(str(paths.data("cues")))
            cues, seconds = self._retry(shard, previous, paths.index)
            if cues is None:
                return
        else:
            cues, seconds = self._map(shard, paths.index)
        captions = kept_captions(cues)
        if self.config.output.embed_audio:
            cues, captions = embed_audio(cues), embed_audio(captions)
        qa = None
        if self.has_qa:
            from fusion_datasets.llm.qa import explode_qa

            qa = explode_qa(captions)
            _write_atomically(qa, paths.data("qa"))
        _write_atomically(captions, paths.data("captions"))
        stats = shard_stats(cues, captions, qa, seconds, self.filter_threshold)
        paths.stats.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(paths.stats, json.dumps(stats))
        _write_atomically(cues, paths.data("cues"))  # last: its presence marks the shard done

    def _write_stats(self, shards: list[ShardPaths]) -> dict:
        """Merge the stats of every shard done so far into ``stats.json``; ``complete`` once all are."""
        done = [paths for paths in shards if paths.done]
        stats = merge_stats([json.loads(paths.stats.read_text()) for paths in done])
        stats["complete"] = len(done) == len(shards)
        write_text_atomically(self.root / "stats.json", json.dumps(stats, indent=2))
        return stats

    def run(self) -> dict:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.root / "config.yaml", dump_config(self.config))
        ds = load_input(self.config.input)
        total = shard_count(ds.num_rows, self.config.output)
        shards = [ShardPaths(self.root, index, total) for index in range(total)]
        mine = shards[self.rank::self.world_size]
        resumed = sum(paths.done for paths in mine)
        _remove_stale_temporaries(self.root, mine)
        publisher = HubPublisher(self.repo_id, self.config.output.private) if self.repo_id else None
        for paths in tqdm(mine, desc="shards", position=0, unit="shard"):
            self._process(ds, paths)
            if publisher:  # also a shard done by an earlier run: what the Hub already holds is not sent
                publisher.publish(self.root, paths.files(), f"Shard {paths.index} of {total}")
        with _exclusive(self.root):  # the last rank to get here sees every shard done and writes last
            stats = self._write_stats(shards)
            if stats["complete"] and self.config.output.export == "fusionaudio":
                logger.info("exported %s", export_fusionaudio(self.root))
            readme = render_card(self.root)
            if publisher and stats["complete"]:
                files = [readme, *(self.root / name for name in ("stats.json", "config.yaml", PLOT, EXPORT))]
                publisher.publish(self.root, [path for path in files if path.exists()],
                                  "Dataset card, stats and config")
        logger.info("rank %d of %d took shards %s (%d already done before this run); %d of %d shards left to "
                    "other ranks", self.rank, self.world_size, [paths.index for paths in mine], resumed,
                    total - stats["shards"], total)
        return stats
