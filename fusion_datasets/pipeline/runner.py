"""Run the pipeline into an output folder: what to do comes from the run state, keyed by clip id and stage.

A run loads the input's ids, reads the committed parts of the output (:mod:`~fusion_datasets.pipeline.state`),
works out which parts to write (:mod:`~fusion_datasets.pipeline.work`: new clips, stages whose config
changed, rows to retry), has the executor run them and commits each part atomically. Several processes
(``torchrun``, ``accelerate launch``) split the parts by rank without talking to each other; whichever
finishes last writes the stats, the manifest and the card of a complete output. This module names no
step: it knows the plan, the executor and the named outputs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from fusion_datasets import __version__
from fusion_datasets.clip_audio import typed_audio, write_parquet
from fusion_datasets.config import to_mapping
from fusion_datasets.files import write_text_atomically
from fusion_datasets.hub.publish import LocalPathsError, published_files
from fusion_datasets.hub.push import HubPublisher, parse_hub_output, staging_dir
from fusion_datasets.layout import CARD, LOCAL_MODELS, MANIFEST
from fusion_datasets.pipeline.card import PLOT, render_card, render_status_card
from fusion_datasets.pipeline.config import PipelineConfig, dump_config, load_run_config
from fusion_datasets.pipeline.executors import make_executor
from fusion_datasets.pipeline.inputs import clip_ids, column_values, input_files, read_input
from fusion_datasets.pipeline.outputs import (
    EXPORT,
    data_counts,
    derived_configs,
    export_fusionaudio,
    publish_view,
)
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.remote import SOURCE_FILE, RemoteInput
from fusion_datasets.pipeline.state import Part, RunState
from fusion_datasets.pipeline.stats import add_up, failed_stages, summarize
from fusion_datasets.pipeline.work import PartWork, WorkPlan, plan_work, redo_rows
from fusion_datasets.public import local_models, public_config
from fusion_datasets.runtime import process_rank, progress_bars, raise_if_interrupted, uninterruptible

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """``stats.json`` of the output as this run left it, and what this process did."""

    stats: dict[str, Any]
    parts_written: int = 0
    counters: dict[str, dict[str, float]] = field(default_factory=dict)  # this run's, per stage

    @property
    def failed_stages(self) -> list[str]:
        """Stages that failed on every row this run gave them."""
        return failed_stages(self.counters)


class PipelineRunner:
    """Runs a :class:`PipelineConfig`; ``run()`` writes this rank's parts and returns a :class:`RunResult`.

    Example (the tiny config's random-weight models, less two stages):
        >>> from fusion_datasets.demo import write_sample_clips
        >>> from fusion_datasets.pipeline.config import load_config
        >>> _ = write_sample_clips("clips")
        >>> config = load_config("tiny", ["input.path=clips", "output.path=out", "experts.separation.enabled=false",
        ...                               "experts.visual.enabled=false"])
        >>> stats = PipelineRunner(config).run().stats
        >>> stats["clips"], stats["captions"], stats["complete"]
        (4, 4, True)
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
        self.repo_id = parse_hub_output(config.output.path)  # hf://datasets/ORG/NAME: push as parts finish
        self.root = staging_dir(self.repo_id) if self.repo_id else Path(config.output.path)
        if self.repo_id and config.output.publish_audio == "auto":  # its rows name files here (audio or video)
            raise LocalPathsError(f"{config.output.path} publishes each part as it is done, and its rows would name "
                                  "files of this machine: set output.publish_audio to embed (the audio in the "
                                  "Parquet, playable on the Hub), source (each clip's public source id and times) or "
                                  "none (no audio)")
        self.plan = Plan.from_config(config)
        self.state = RunState(self.root)
        self.input_unreadable = 0  # folders (or remote files) of the input that could not be read
        self.source: RemoteInput | None = None  # a remote input (Parquet, WebDataset), read a part at a time
        # an engine without its extra fails here, in one line saying how to install it, before any work
        self.executor = make_executor(self.plan, config, self.root)

    def read(self) -> tuple[datasets.Dataset, list[str], pa.Table]:
        """The input, its ids (checked) and the files its clips name; reads nothing of the output."""
        loaded = read_input(self.config.input, exclude=[self.root])
        ds, self.input_unreadable, self.source = loaded.dataset, len(loaded.unreadable), loaded.source
        return ds, clip_ids(ds), input_files(ds, [step.audio_column for step in self.plan.steps])

    def prepare(self, read: tuple[datasets.Dataset, list[str], pa.Table] | None = None
                ) -> tuple[datasets.Dataset, list[str], WorkPlan]:
        """The input, its ids and the work of every rank; reads the output, writes nothing but tidying."""
        ds, ids, files = read or self.read()
        parts: dict[str, Part] = {}
        if (self.root / "data").is_dir():
            with self.state.lock():
                parts = self.state.load()
        output = self.config.output
        if self.source is not None and self.input_unreadable and output.removed_clips == "drop":
            logger.warning("%d files of the input could not be read: their clips look removed from it, so no clip "
                           "is dropped this run", self.input_unreadable)
            output = replace(output, removed_clips="keep")
        work = plan_work(self.state, parts, ids, files, self.plan, output, self.world_size, self.retry_errors)
        return ds, ids, work

    def run(self) -> RunResult:
        """Write this rank's parts, as the only run writing the output (:meth:`RunState.writing`); a mistake
        in the input stops it before it writes anything."""
        read = self.read()
        output = self.config.output
        identity = {"plan": self.plan.fingerprints(), "input": self.config.input.path,
                    "parts": [output.shard_size, output.num_shards], "embed_audio": output.embed_audio}
        with self.state.writing(identity, self.rank, self.world_size):
            return self._run(read)

    def _run(self, read: tuple[datasets.Dataset, list[str], pa.Table]) -> RunResult:
        ds, ids, work = self.prepare(read)
        self.root.mkdir(parents=True, exist_ok=True)
        if work.parts:  # first of all, every reader is told the output is mid-run (complete: false)
            with self.state.lock():
                self._write_view(ids)
        write_text_atomically(self.root / "config.yaml", dump_config(self.config))
        write_text_atomically(self.root / LOCAL_MODELS, json.dumps(local_models(to_mapping(self.config)), indent=2))
        if work.clips_not_in_input:
            logger.warning("%d clips of %s are no longer in the input: %s (output.removed_clips)",
                           work.clips_not_in_input, self.root,
                           "dropping them" if self.config.output.removed_clips == "drop" else "kept")
        if work.clips_kept_unseen:
            logger.warning("%d of them are kept all the same: their files may still be there (a folder that could "
                           "not be read, a dangling link, a disk not mounted); mend that and rerun to drop them",
                           work.clips_kept_unseen)
        mine = work.mine(self.rank, self.world_size)
        logger.info("rank %d of %d: %d new clips in all, %d parts to write, %d of them here",
                    self.rank, self.world_size, work.new_clips, len(work.parts), len(mine))
        publisher = HubPublisher(self.repo_id, self.config.output.private) if self.repo_id else None
        if publisher and self.rank == 0:
            self._publish_unpushed(publisher)
        rows = {clip: index for index, clip in enumerate(ids)}
        if self.source:  # each remote file is fetched once, and removed after the last part that reads it
            files = column_values(ds, SOURCE_FILE)
            self.source.expect([files[rows[clip]] for clip in item.ids if clip in rows] for item in mine)
        result = RunResult({})
        progress = not datasets.are_progress_bars_disabled()
        unpushed: list[PartWork] = []  # parts committed here since the last Hub commit
        pushed_at = time.monotonic()
        with progress_bars(False):  # a bar for the parts and one per pass: not one per bookkeeping step
            for item, cues, counters in self._execute(ds, rows, mine, progress):
                raise_if_interrupted()  # never commit a part whose work a swallowed Ctrl-C cut short
                self._commit(item, cues, counters, ids)
                result.counters = add_up(result.counters, counters)
                result.parts_written += 1
                if publisher:
                    unpushed.append(item)
                    if time.monotonic() - pushed_at >= self.config.output.push_interval:
                        self._push_parts(publisher, unpushed)
                        unpushed, pushed_at = [], time.monotonic()
        with self.state.lock():  # the last rank to get here sees every part, writes last and pushes last
            result.stats = self._finish(ids)
            if publisher:
                self._push_parts(publisher, unpushed, finished=result.stats["complete"])
        return result

    def _push_parts(self, publisher: HubPublisher, parts: list[PartWork], finished: bool = False) -> None:
        """One Hub commit of ``parts`` with the card and stats (what the parts replace goes out in it), and with
        ``finished`` the card, stats, config and manifest of the finished output."""
        files = [path for item in parts for path in self.state.files(item.name)]
        message = (f"Part {parts[0].name} ({len(parts[0].ids)} clips)" if len(parts) == 1 else
                   f"{len(parts)} parts ({sum(len(item.ids) for item in parts)} clips)" if parts else "")
        if finished:
            names = (CARD, "stats.json", "config.yaml", MANIFEST, PLOT, EXPORT)
            files += [path for name in names if (path := self.root / name).exists()]
            message = "; ".join(filter(None, [message, "Dataset card, stats and config"]))
        elif files:
            files += [self.root / CARD, self.root / "stats.json"]
        if files:
            self._publish(publisher, files, message, whole=finished)

    def _execute(self, ds: datasets.Dataset, rows: dict[str, int], mine: list[PartWork], progress: bool
                 ) -> Iterator[tuple[PartWork, datasets.Dataset, dict[str, dict[str, float]]]]:
        """Each part's cues and counters, as the engine finishes them (with progress bars if ``progress``)."""
        yield from self.executor.run(((item, self._table(ds, rows, item)) for item in mine), progress, self.source)

    def _table(self, ds: datasets.Dataset, rows: dict[str, int], item: PartWork) -> datasets.Dataset:
        """A part's rows before its work: the input's for new clips; for a part to rewrite, its kept cues with the
        input's columns as the input has them now (:func:`~fusion_datasets.pipeline.work.redo_rows`). Of a remote
        input, the rows of its index: the executor reads their media."""
        current = ds.select([rows[clip] for clip in item.ids if clip in rows])  # a kept part's clips may be gone
        if item.previous is None:
            return current
        table = datasets.Dataset.from_parquet(str(self.state.data("cues", item.previous.name)))
        stages, stored = self.plan.stages, self.plan.stored()
        stale = [name for stage, entry in item.previous.plan.items() if stage not in stages
                 for name in entry["writes"] if name in table.column_names and name not in stored]
        return redo_rows(table.remove_columns(stale), current, self.plan, item.work, item.previous.embed_audio)

    def _commit(self, item: PartWork, cues: datasets.Dataset, counters: dict[str, dict[str, float]],
                ids: list[str]) -> None:
        """Write a part's configs and state beside their places, then commit them: rename them into place and
        rewrite what readers see (:meth:`_write_view`), as one step that a Ctrl-C does not cut."""
        if item.dropped:
            dropped = set(item.dropped)
            cues = cues.filter(lambda clip: clip not in dropped, input_columns="id", desc="dropping removed clips")
        if self.config.output.embed_audio:
            cues = typed_audio(cues, embed=True)
        configs = {"cues": cues, **derived_configs(cues)}
        written = {}
        for config, data in configs.items():
            written[config] = self.state.temporary(self.state.data(config, item.name))
            write_parquet(data, written[config])
        work = add_up(item.previous.work if item.previous else {}, counters)
        part = Part(item.name, list(item.ids), self.plan.fingerprints(),
                    data_counts(self.plan.steps, cues, configs.get("captions"), configs.get("qa")), work,
                    self.config.output.embed_audio, [item.previous.name] if item.previous else [])
        with uninterruptible(), self.state.lock():
            self.state.commit(part, written)
            self._write_view(ids)

    def _write_view(self, ids: list[str]) -> tuple[list[Part], dict[str, Any]]:
        """What readers see, from the committed parts (under the lock): a card that lists their files
        (:func:`~fusion_datasets.pipeline.card.render_status_card`) and ``stats.json``, then the parts they replace
        are deleted. ``stats.json`` goes first when it says ``complete: false`` and last when it says true, so
        that killed at any point the folder never claims to be complete while its card lacks a clip, and its
        card lists one consistent state. Returns parts and stats."""
        parts = self.state.load()
        stats = summarize(list(parts.values()), ids, self.plan, self.input_unreadable)
        writes = [partial(render_status_card, self.root, self.config, self.state.committed_files(parts), stats),
                  partial(write_text_atomically, self.root / "stats.json", json.dumps(stats, indent=2))]
        for write in writes if stats["complete"] else reversed(writes):
            write()
        self.state.remove_replaced(parts)
        return list(parts.values()), stats

    def _finish(self, ids: list[str]) -> dict[str, Any]:
        """Stats, manifest and card of the output as it stands (called under the lock)."""
        parts, stats = self._write_view(ids)
        self.state.write_manifest({
            "fusion_datasets": __version__,
            "input": public_config({"path": self.config.input.path, "split": self.config.input.split,
                                    "clips": len(ids)}),
            "plan": self.plan.describe(),
            "parts": {part.name: len(part.ids) for part in parts},
            "complete": stats["complete"],
        })
        if stats["complete"] and self.config.output.export == "fusionaudio":
            logger.info("exported %s", export_fusionaudio(self.root, self.config.output.export_audio_root))
        render_card(self.root, load_run_config(self.root))
        return stats

    def _publish_unpushed(self, publisher: HubPublisher) -> None:
        """Push the committed parts the Hub lacks, with the card that lists them: a run stopped between a part's
        commit here and its push (killed, or the Hub down) left the Hub's card listing files it does not hold."""
        with self.state.lock():
            parts = self.state.load()
        pushed = set(publisher.pushed_files())
        missing = [path for name in sorted(parts) for path in self.state.files(name)
                   if path.relative_to(self.root).as_posix() not in pushed]
        if missing:
            count = len({path.stem for path in missing})  # a part's files are all named after it
            logger.info("%d parts committed here are not on %s yet: pushing them first", count, self.repo_id)
            self._publish(publisher, [*missing, self.root / CARD, self.root / "stats.json"],
                          f"{count} parts committed, not pushed yet", whole=True)

    def _publish(self, publisher: HubPublisher, files: list[Path], message: str, whole: bool = False) -> None:
        """Push ``files`` as ``output.publish_audio`` publishes them (``whole``: with the card of every part as
        published), and remove from the Hub the parts this folder no longer has (replaced ones)."""
        stale = publisher.stale_parts(self.root)
        folder, files = published_files(self.root, files, self.config.output.publish_audio)
        if whole and folder != self.root:  # every part in the view, and the card rendered from it
            publish_view(self.root, self.config.output.publish_audio)
        publisher.publish(folder, files, message, deleted=stale)
