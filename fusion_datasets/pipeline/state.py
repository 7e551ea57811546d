"""The run state of an output folder, keyed by clip id and stage.

An output is a set of *parts*. A part is a group of clips and four files named after it:
``data/{cues,captions,qa}/<part>.parquet`` and ``state/<part>.json``, which holds the part's clip ids,
the plan that made them (each stage's fingerprint and columns), the counts of its data, the work
counters of every run that touched it, and the parts it replaces. A part's name comes from its clip
ids and a generation number, never from how many parts there are, so no rerun can leave a stale file
beside a new one under another name.

A part is committed under the output's lock by renaming its files into place, ``cues`` last: a part is
done when its ``cues`` file exists. A rerun that redoes a part writes the next generation beside the old
one (``replaces``); the runner then rewrites the card's file lists, and only then are the replaced parts
deleted (:meth:`RunState.remove_replaced`), so a reader of the card never sees both generations nor a
listed file that is gone. Killed in between, the next run finishes the job. Files without their ``cues``
(a commit cut short) and temporary files of dead processes are removed when the state is loaded.
``manifest.json`` at the root sums the state up for people and tools.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fusion_datasets.errors import UserError
from fusion_datasets.files import TEMPORARY, temporary_path, write_text_atomically
from fusion_datasets.layout import CONFIGS, MANIFEST

logger = logging.getLogger(__name__)

STATE = "state"


class OutputMismatch(UserError):
    """The output folder was made in a way this run cannot continue; the message says what to do."""


class OutputBusy(UserError):
    """Another run is writing the output folder."""


@dataclass
class Part:
    """One committed part: its clips, the plan that made them, its counts and its work counters."""

    name: str
    ids: list[str]
    plan: dict[str, dict[str, Any]]  # stage -> {"fingerprint", "writes"}
    counts: dict[str, Any] = field(default_factory=dict)  # of its data (clips, captions, errors, ...)
    work: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> counters, every run added up
    embed_audio: bool = False
    replaces: list[str] = field(default_factory=list)

    @property
    def generation(self) -> int:
        return int(self.name.rsplit("-", 1)[1])


def part_name(ids: Sequence[str], generation: int = 0) -> str:
    r"""``part-<hash of the ids>-<generation>``: the same clips give the same name on every run, and other
    clips another name, whatever characters their ids hold.

    The ids are hashed one per line, as earlier versions named parts, unless one holds a line break or a
    backslash: then as a JSON list, whose text always holds a backslash that a line-per-id text of such
    ids cannot, so ``["a\nb"]`` and ``["a", "b"]`` never share a name.

    Example:
        >>> part_name(["a\nb"]) != part_name(["a", "b"])
        True
    """
    text = "\n".join(ids)
    if "\\" in text or text.count("\n") != max(len(ids) - 1, 0):  # an id holds a backslash or a line break
        text = json.dumps(list(ids))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"part-{digest}-{generation:04d}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(writer: Mapping[str, Any], me: Mapping[str, Any]) -> bool:
    """Whether a listed writer may still be running: another host's cannot be checked from here."""
    if writer["host"] != me["host"]:
        return True
    return writer["pid"] != me["pid"] and _pid_alive(writer["pid"])


class RunState:
    """The parts of an output folder, and the lock that ranks take to commit or to tidy them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._parts: dict[str, Part] = {}  # state files read so far: a committed part's never changes

    def data(self, config: str, name: str) -> Path:
        return self.root / "data" / config / f"{name}.parquet"

    def state(self, name: str) -> Path:
        return self.root / STATE / f"{name}.json"

    def temporary(self, path: Path) -> Path:
        """Where ``path`` is written before its commit (removed on a later load once this process is gone)."""
        return temporary_path(path)

    def files(self, name: str) -> list[Path]:
        """A part's files in commit order (``cues`` last); only those that exist."""
        paths = [*(self.data(config, name) for config in CONFIGS if config != "cues"), self.state(name),
                 self.data("cues", name)]
        return [path for path in paths if path.exists()]

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One process of a run at a time commits, tidies, or writes the stats and the card."""
        path = self.root / ".cache" / "run.lock"  # .cache/ is never uploaded (see hub.push.IGNORED)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
            yield

    @contextmanager
    def writing(self, run: Mapping[str, Any], rank: int, world_size: int) -> Iterator[None]:
        """Register this process as a writer of the output for the block; refuse a second run.

        ``run`` describes the run (its plan's fingerprints and how it cuts parts): the ranks of one launch
        (``torchrun``, same ``run`` and ``world_size``, another ``rank``) write together; any other run while
        one is alive (the same config started twice, another config, another part size) is refused with
        :class:`OutputBusy`, before it reads the output: two runs would mix parts of two plans or cut one clip
        into two parts. Writers are listed in ``.cache/writers.json``; a dead process's entry is dropped.
        """
        me = {"host": socket.gethostname(), "pid": os.getpid(), "rank": rank, "world_size": world_size,
              "run": hashlib.sha256(json.dumps(run, sort_keys=True).encode("utf-8")).hexdigest()[:16]}
        with self.lock():
            writers = [writer for writer in self._writers() if _alive(writer, me)]
            for writer in writers:
                ours = (writer["run"], writer["world_size"]) == (me["run"], world_size) and writer["rank"] != rank
                if not ours:
                    raise OutputBusy(
                        f"{self.root} is being written by another run (pid {writer['pid']} on {writer['host']}, "
                        f"{'the same config' if writer['run'] == me['run'] else 'another config or part size'}): "
                        "wait for it to end, then rerun; two runs at once would mix their parts. If it is no "
                        f"longer running, delete {self._writers_file()}.")
            self._write_writers([*writers, me])
        try:
            yield
        finally:
            with self.lock():
                self._write_writers([writer for writer in self._writers()
                                     if (writer["host"], writer["pid"]) != (me["host"], me["pid"])])

    def _writers_file(self) -> Path:
        return self.root / ".cache" / "writers.json"

    def _writers(self) -> list[dict[str, Any]]:
        path = self._writers_file()
        return json.loads(path.read_text("utf-8")) if path.is_file() else []

    def _write_writers(self, writers: list[dict[str, Any]]) -> None:
        write_text_atomically(self._writers_file(), json.dumps(writers, indent=2))

    def check_layout(self) -> None:
        """Refuse an output written in the shard layout of earlier versions (``shard-*-of-*`` files)."""
        old = sorted((self.root / "data").glob("*/shard-*-of-*.parquet"))
        if old:
            raise OutputMismatch(
                f"{self.root} holds shards of an earlier fusion_datasets layout ({old[0].name}): their clips "
                "cannot be matched by id. Write to a new output folder, or delete this one and rerun.")

    def load(self) -> dict[str, Part]:
        """The committed parts by name: the done parts that no done part replaces (call under the lock).

        What interrupted runs left behind is removed first. Replaced parts stay on disk until
        :meth:`remove_replaced`, once the card no longer lists them.
        """
        self.check_layout()
        self._remove_dead_temporaries()
        done = {}
        for path in sorted((self.root / "data" / "cues").glob("part-*.parquet")):
            name = path.stem
            if name in self._parts or self.state(name).exists():
                done[name] = self._part(name)
        self._remove_orphans(set(done))
        replaced = {old for part in done.values() for old in part.replaces}
        return {name: part for name, part in done.items() if name not in replaced}

    def _part(self, name: str) -> Part:
        if name not in self._parts:
            self._parts[name] = Part(**json.loads(self.state(name).read_text("utf-8")))
        return self._parts[name]

    def remove_replaced(self, committed: Mapping[str, Part]) -> None:
        """Delete every done part that is not among ``committed`` (call under the lock, after the card no
        longer lists them)."""
        for path in sorted((self.root / "data" / "cues").glob("part-*.parquet")):
            if path.stem not in committed:
                logger.info("removing %s, replaced", path.stem)
                self.delete(path.stem)
                self._parts.pop(path.stem, None)

    def _remove_dead_temporaries(self) -> None:
        for folder in [*(self.root / "data").glob("*"), self.root / STATE]:
            for path in folder.glob(".*.tmp"):
                match = TEMPORARY.match(path.name)
                if match and not _pid_alive(int(match["pid"])):
                    logger.info("removing %s, left by an interrupted run", path)
                    path.unlink(missing_ok=True)

    def _remove_orphans(self, done: set[str]) -> None:
        """Files of parts whose commit was cut short before their ``cues`` file."""
        for path in [*(self.root / "data").glob("*/part-*.parquet"), *(self.root / STATE).glob("part-*.json")]:
            if path.stem not in done:
                logger.info("removing %s, left by an interrupted commit", path)
                path.unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        """Remove a part, ``cues`` first, so that it is no longer done before anything else goes."""
        for path in reversed(self.files(name)):
            path.unlink(missing_ok=True)

    def commit(self, part: Part, written: dict[str, Path]) -> list[Path]:
        """Rename a part's written temporary files into place, ``cues`` last (call under the lock).

        ``written`` maps each config to its temporary Parquet file. Returns the part's files. What the part
        replaces stays until :meth:`remove_replaced`.
        """
        state = self.temporary(self.state(part.name))
        state.write_text(json.dumps(asdict(part)), encoding="utf-8")
        for config in [name for name in CONFIGS if name != "cues" and name in written]:
            os.replace(written[config], self.data(config, part.name))
        os.replace(state, self.state(part.name))
        os.replace(written["cues"], self.data("cues", part.name))
        self._parts[part.name] = part
        return self.files(part.name)

    def committed_files(self, parts: Mapping[str, Part]) -> dict[str, list[str]]:
        """Each config's data files of ``parts``, relative to the output (what the card lists)."""
        return {config: [self.data(config, name).relative_to(self.root).as_posix() for name in sorted(parts)
                         if self.data(config, name).exists()] for config in CONFIGS}

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        return write_text_atomically(self.root / MANIFEST, json.dumps(manifest, indent=2))

    def read_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: it is written by `fusion-datasets run`")
        return json.loads(path.read_text("utf-8"))
