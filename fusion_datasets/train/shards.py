"""WebDataset shards as a CLAP training source: LAION-CLAP's ``{split}/{n}.tar`` and ``{split}/sizes.json``.

A folder or an ``hf://datasets/ORG/NAME/...`` path (read through fsspec: huggingface_hub's ``HfFileSystem``)
whose ``{split}/sizes.json`` maps each shard's file name to its samples, as ``fusion-datasets export --format
webdataset`` writes it. Each sample is ``<key>.flac`` (or another audio file) and ``<key>.json`` with ``text``:
a caption or a list of captions.

The shards are read as a table of ``{id, audio, captions}`` rows by index, so that training orders, splits
across processes and workers, and resumes them as it does any table: ``sizes.json`` gives the row count and
where each shard's rows start, and the epoch order (:class:`~fusion_datasets.train.data.EpochOrder`) reads one
shard after another. A reader keeps the shard it is on open and remembers where each of its samples lies in the
tar, so it reads each tar once and holds no more than two shards' member offsets: memory stays flat in the
dataset's size.

Example:
    >>> from fusion_datasets.export import export
    >>> _ = export("out", "webdataset", "exports/wds")
    >>> table = open_shards("exports/wds", "train")
    >>> table.num_rows, table[0]["captions"]
    (4, 'A dog barks twice while one car passes by on the wet road.')
"""

from __future__ import annotations

import json
import os
import tarfile
from bisect import bisect_right
from collections import OrderedDict
from itertools import accumulate
from typing import Any

from fusion_datasets.errors import UserError
from fusion_datasets.media import MediaError
from fusion_datasets.media_files import WEBDATASET_AUDIO, WEBDATASET_KEY

SIZES = "sizes.json"
_OPEN_SHARDS = 2  # a batch may straddle two shards


def open_shards(root: str, split: str) -> ShardTable | None:
    """The shards of ``split`` under ``root`` (a folder or an ``hf://`` path), or ``None`` where there are none.

    Tar files without ``sizes.json`` are a :class:`UserError`: training needs each shard's count up front.
    """
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(root)
    folder = f"{path.rstrip('/')}/{split}"
    if fs.isfile(f"{folder}/{SIZES}"):
        return ShardTable(root, split)
    if fs.glob(f"{folder}/*.tar"):
        raise UserError(
            f"{root}/{split} holds WebDataset shards but no {SIZES}, which training needs to know each shard's "
            f"samples (LAION-CLAP's layout: {{\"0.tar\": N, ...}}). `fusion-datasets export OUT --format webdataset` "
            "writes it; for shards made elsewhere, write it from the shards' sample counts"
        )
    return None


class ShardTable:
    """The samples of a split's shards as rows ``{id, audio: {bytes, path}, captions}``, read by index.

    ``shard_sizes`` are the samples of each shard, in the order of the rows (shards sorted by number). A row that
    cannot be read (its shard missing or corrupt, no audio file, unreadable JSON, fewer samples than ``sizes.json``
    says) raises :class:`MediaError` naming the shard and the sample, which training counts and skips; a JSON
    without ``text`` gives ``captions`` ``None``. Samples past a shard's count in ``sizes.json`` are not read.
    """

    column_names = ("id", "audio", "captions")

    def __init__(self, root: str, split: str) -> None:
        from fsspec.core import url_to_fs

        self.root, self.split = root, split
        self.fs, path = url_to_fs(root)
        self.folder = f"{path.rstrip('/')}/{split}"
        try:
            sizes = json.loads(self.fs.cat_file(f"{self.folder}/{SIZES}"))
            counts = {str(name): int(count) for name, count in sizes.items()}
        except (ValueError, TypeError, AttributeError) as error:
            raise UserError(
                f"{root}/{split}/{SIZES} is not a JSON object of shard file names and sample counts ({error})"
            ) from error
        self.shards = sorted(counts, key=_shard_order)
        self.shard_sizes = [counts[name] for name in self.shards]
        self.starts = [0, *accumulate(self.shard_sizes)]
        self.num_rows = self.starts[-1]
        self._readers: OrderedDict[int, _ShardReader] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self.num_rows

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": OrderedDict()}  # open files stay with the process that opened them

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_rows:
            raise IndexError(f"row {index} of {self.num_rows}")
        shard = bisect_right(self.starts, index) - 1
        key, files = self._reader(shard).sample(index - self.starts[shard])
        where = f"{self.split}/{self.shards[shard]} sample {key}"
        audio = next((files[suffix] for suffix in WEBDATASET_AUDIO if suffix in files), None)
        if audio is None:
            raise MediaError(f"{where} has no audio file ({', '.join(f'.{s}' for s in WEBDATASET_AUDIO)})")
        try:
            text = json.loads(files["json"]) if "json" in files else {}
        except ValueError as error:
            raise MediaError(f"{where} has an unreadable .json ({error})") from error
        text = text if isinstance(text, dict) else {}
        return {"id": text.get("id") or key, "audio": {"bytes": audio, "path": None}, "captions": text.get("text")}

    def _reader(self, shard: int) -> _ShardReader:
        if self._pid != os.getpid():  # a forked worker: its parent's file positions are not its own
            self._readers, self._pid = OrderedDict(), os.getpid()
        if shard not in self._readers:
            name = self.shards[shard]
            self._readers[shard] = _ShardReader(self.fs, f"{self.folder}/{name}", name)
            while len(self._readers) > _OPEN_SHARDS:
                self._readers.popitem(last=False)[1].close()
        self._readers.move_to_end(shard)
        return self._readers[shard]


def _shard_order(name: str) -> tuple[bool, int, str]:
    """Numbered shards (``10.tar``) by number, then any others by name."""
    stem = name.split(".")[0]
    return (not stem.isdigit(), int(stem) if stem.isdigit() else 0, name)


class _ShardReader:
    """One open tar: its samples' members (key, suffix, header) as far as it has read, each one's data on demand."""

    def __init__(self, fs: Any, path: str, name: str) -> None:
        self.name = name
        self.samples: list[tuple[str, dict[str, tarfile.TarInfo]]] = []
        self.problem: str | None = None
        self.file: Any = None
        self.tar: tarfile.TarFile | None = None
        try:
            self.file = fs.open(path, "rb")
            self.tar = tarfile.open(fileobj=self.file, mode="r:")
        except (OSError, tarfile.TarError) as error:
            self.problem = f"cannot read shard {name}: {error}"
        self.ended = self.tar is None

    def sample(self, number: int) -> tuple[str, dict[str, bytes]]:
        """Sample ``number``'s key and files by suffix; :class:`MediaError` where it cannot be read."""
        # a sample is whole once the next one has begun (a key's files are consecutive) or the tar has ended
        while not self.ended and len(self.samples) <= number + 1:
            self._read_header()
        if number >= len(self.samples):
            raise MediaError(self.problem or f"shard {self.name} has {len(self.samples)} samples, no sample {number}")
        key, members = self.samples[number]
        try:
            return key, {suffix: self.tar.extractfile(member).read() for suffix, member in members.items()}
        except (OSError, tarfile.TarError) as error:
            raise MediaError(f"cannot read sample {key} of shard {self.name}: {error}") from error

    def _read_header(self) -> None:
        """Read the next member's header, its data skipped; at the end or a corrupt header, the tar has ended."""
        try:
            member = self.tar.next()
        except (OSError, tarfile.TarError) as error:
            self.problem = f"shard {self.name} is corrupt after {len(self.samples)} samples: {error}"
            member = None
        if member is None:
            self.ended = True
            return
        parts = WEBDATASET_KEY.match(member.name)
        if member.isfile() and parts:
            key, suffix = parts.groups()
            if not self.samples or self.samples[-1][0] != key:
                self.samples.append((key, {}))
            self.samples[-1][1][suffix] = member

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
