"""Inputs read where they live (a Hub dataset, ``hf://``, ``s3://``, ``gs://``): Parquet files or WebDataset
shards, listed, indexed, and read a part at a time.

Planning needs each clip's id and the names of its files, not its audio. The *index* holds every column of the
input but the embedded media (:class:`RemoteParquet`: every column of its files, the media's ``path`` alone read
by ranged reads of the column chunks; :class:`RemoteTars`: each sample's id, audio member name and text members,
read from the tar headers), with where each row's media are (:data:`SOURCE_COLUMNS`). A part's rows get their
media back from their files: in this process (:meth:`RemoteInput.materialize`) each file is downloaded once
into the output's cache, and removed as soon as no part of the run still needs it, so the disk holds the files
of the parts in flight only; in a Ray task (:meth:`RemoteInput.read_rows`) ranged reads take the row groups or
members that hold a part's rows, nothing written to disk. The index is kept in fusion_datasets' cache under the
listing's fingerprint (each file's name, size and version), so a rerun over an unchanged input reads nothing
but the listing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from itertools import accumulate
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Self, TypeVar

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from fusion_datasets.errors import UserError
from fusion_datasets.files import temporary_path
from fusion_datasets.http_errors import redact
from fusion_datasets.media_files import WEBDATASET_AUDIO, WEBDATASET_KEY
from fusion_datasets.runtime import cache_dir

logger = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE_FILE, SOURCE_ROW = "__source_file", "__source_row"  # where an index row's media are: file, row or offset
SOURCE_SIZE = "__source_size"  # the size of a tar member
SOURCE_COLUMNS = (SOURCE_FILE, SOURCE_ROW, SOURCE_SIZE)  # the index's own columns, never in a part's rows
TAR_TEXTS = ("json", "txt", "text", "cls")  # a sample's text members, read into the index as columns
_HEADER_READ = 1 << 16  # bytes per read while indexing a tar: a header, and what follows it if small
REMOTE_PREFIXES = ("hf://", "s3://", "gs://", "gcs://", "az://", "abfs://", "https://", "http://")


def hub_url(path: str) -> str:
    """The fsspec URL of an input path: a Hub dataset id ``ORG/NAME`` is ``hf://datasets/ORG/NAME``."""
    return path if path.startswith(REMOTE_PREFIXES) else f"hf://datasets/{path}"


def _in_split(relative: str, split: str) -> bool:
    """Whether a file of a Hub dataset belongs to ``split`` by the Hub's file naming (``data/train-0000.parquet``,
    ``train/0000.parquet``, ``data/ds-train.parquet``)."""
    parts = PurePosixPath(relative).parts
    name = parts[-1].lower()
    return split in parts[:-1] or name.startswith((f"{split}-", f"{split}.", f"{split}_")) or f"-{split}-" in name \
        or name.split(".")[0].endswith((f"-{split}", f"_{split}"))


def _declared_files(fs: Any, root: str, path: str, split: str, config: str | None, suffix: str
                    ) -> dict[str, Any] | None:
    """The files of ``split`` of the Hub dataset at ``root`` as its card's ``configs`` declare them for
    ``config`` (default: the one marked ``default``, the only one, or the one named ``default``), each pattern
    listed; ``None`` when its card declares none (and no ``config`` is asked for)."""
    from huggingface_hub import DatasetCard

    card = f"{root}/README.md"
    declared = (DatasetCard(fs.read_text(card, encoding="utf-8")).data.configs or []) if fs.isfile(card) else []
    names = [entry["config_name"] for entry in declared]
    if not declared:
        if config is not None:
            raise UserError(f"input.config is {config!r}, but the Hub dataset {path} declares no configs in its "
                            "card: leave input.config out")
        return None
    if config is None:
        chosen = next((entry for entry in declared if entry.get("default")), None) or (
            declared[0] if len(declared) == 1 else next((e for e in declared if e["config_name"] == "default"), None))
        if chosen is None:
            raise UserError(f"the Hub dataset {path} has several configs ({', '.join(names)}): name one with "
                            "input.config (--set input.config=NAME)")
    elif config in names:
        chosen = declared[names.index(config)]
    else:
        raise UserError(f"the Hub dataset {path} has no config {config!r}; its configs: {', '.join(names)}")
    data_files = chosen.get("data_files")
    if data_files is None:  # a config by its folder alone: the Hub's naming of splits under it
        folder = f"{root}/{chosen.get('data_dir', '')}".rstrip("/")
        return {name: info for name, info in fs.glob(f"{folder}/**/*{suffix}", detail=True).items()
                if _in_split(name.removeprefix(folder).lstrip("/"), split)}
    splits = _split_patterns(data_files)
    if split not in splits:
        raise UserError(f"config {chosen['config_name']!r} of the Hub dataset {path} has no split {split!r}; its "
                        f"splits: {', '.join(splits)} (input.split)")
    return {name: info for pattern in splits[split] for name, info in fs.glob(f"{root}/{pattern}", detail=True).items()}


def _split_patterns(data_files: Any) -> dict[str, list[str]]:
    """A card config's ``data_files`` (a pattern, a list of them, or a list of ``{split, path}``) by split."""
    if isinstance(data_files, str) or (data_files and all(isinstance(entry, str) for entry in data_files)):
        return {"train": [data_files] if isinstance(data_files, str) else list(data_files)}
    return {entry["split"]: [entry["path"]] if isinstance(entry["path"], str) else list(entry["path"])
            for entry in data_files}


def _version(info: dict[str, Any]) -> str:
    """A listed file's size and version, as its file system gives one (a Hub blob id, an ETag, a time)."""
    version = info.get("blob_id") or info.get("ETag") or info.get("etag") or info.get("mtime")
    return json.dumps([info.get("size"), version], default=str)


def _media_columns(schema: pa.Schema) -> list[str]:
    """The columns whose values embed media bytes (``datasets.Audio`` and the like): left out of the index."""
    return [field.name for field in schema
            if pa.types.is_struct(field.type) and field.type.get_field_index("bytes") >= 0]


class RemoteInput(ABC):
    """The files of a remote input in one format (a subclass), its index, and its media read a part at a time."""

    suffix: ClassVar[str]  # the format's file names end so

    def __init__(self, url: str, fs: Any, files: Sequence[str], versions: Sequence[str]) -> None:
        self.url = url  # where the input is (its file system's protocol): what a worker opens it by
        self.fs = fs
        self.files = list(files)  # the file system's own paths, as listed
        self.versions = list(versions)  # each file's size and version, as listed (what the index is keyed by)
        self.fetched: dict[str, Path] = {}  # file -> its local copy
        self.needed: Counter[str] = Counter()  # file -> the parts still to read it
        self.unreadable: list[str] = []  # the files the index could not read (their clips are not in it)

    @classmethod
    def find(cls, path: str, split: str, config: str | None = None) -> Self | None:
        """The files of the format of ``path`` (a Hub dataset id, or a URL of a file, a folder or a glob) for
        ``split`` (of a Hub dataset's ``config``), as listed (nothing is downloaded); ``None`` where there are
        none (the input is in another format)."""
        import fsspec

        fs, root = fsspec.core.url_to_fs(hub_url(path))
        root = root.rstrip("/")
        if any(char in root for char in "*?["):
            found = fs.glob(root, detail=True)
        elif root.endswith(cls.suffix) and fs.isfile(root):
            found = {root: fs.info(root)}
        elif path.startswith(REMOTE_PREFIXES):
            found = fs.glob(f"{root}/**/*{cls.suffix}", detail=True)
        else:  # a Hub id: the files its card declares for the split, else those the Hub's naming puts in it
            found = _declared_files(fs, root, path, split, config, cls.suffix)
            if found is None:
                found = {name: info for name, info in fs.glob(f"{root}/**/*{cls.suffix}", detail=True).items()
                         if _in_split(name.removeprefix(root).lstrip("/"), split)}
        found = {name: info for name, info in found.items() if name.endswith(cls.suffix)}
        if not found:
            return None
        names = sorted(found)
        return cls(hub_url(path), fs, names, [_version(found[name]) for name in names])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "fs": None}  # a worker opens the file system itself, with its own credentials

    def __setstate__(self, state: dict[str, Any]) -> None:
        import fsspec

        self.__dict__.update(state)
        self.fs = fsspec.core.url_to_fs(self.url)[0]

    def index(self) -> datasets.Dataset:
        """Every row of the files less its media bytes, with where its media are (:data:`SOURCE_COLUMNS`); kept in
        fusion_datasets' cache under the listing's fingerprint.

        A file that cannot be read (corrupt, or the network failing) is left out, warned about and listed in
        :attr:`unreadable`; the index is then kept apart from the cache, so that a rerun reads that file again.
        """
        key = hashlib.sha256(json.dumps([self.files, self.versions]).encode()).hexdigest()[:16]
        kept = cache_dir() / "inputs" / f"{key}.parquet"
        if not kept.is_file():
            tables = self._read_each(self.files, self._index_file)
            self.unreadable = [name for name in self.files if name not in tables]
            if not tables:
                raise UserError(f"none of the {len(self.files)} files of the input {self.url} could be read "
                                "(the warnings above say why)")
            kept = kept.with_name(f"{key}-partial.parquet") if self.unreadable else kept
            staging = temporary_path(kept)
            pq.write_table(self._joined(list(tables.values())), staging)
            os.replace(staging, kept)
            logger.info("indexed %d files of the input (%s)", len(tables), kept)
        return datasets.Dataset.from_parquet(str(kept))

    def _read_each(self, files: Iterable[str], read: Callable[[str], T]) -> dict[str, T]:
        """``read(file)`` of each of ``files``; a file that cannot be read is left out and warned about (the rows it
        holds get no media: their decode fails, an error a ``--retry-errors`` rerun retries)."""
        done = {}
        for name in files:
            try:
                done[name] = read(name)
            except Exception as error:  # noqa: BLE001 - corrupt, or the network: the run goes on without it
                logger.warning("cannot read %s of the input: %s", name, redact(f"{type(error).__name__}: {error}"))
        return done

    def expect(self, parts: Iterable[Sequence[str | None]]) -> None:
        """The files each part to run will read (its rows' :data:`SOURCE_FILE`): a file is kept until the last."""
        for files in parts:
            self.needed.update(set(files) - {None})

    def _fetch(self, name: str, folder: Path) -> Path:
        if name not in self.fetched:
            local = folder / hashlib.sha256(name.encode()).hexdigest()[:16]
            staging = temporary_path(local)
            try:
                self.fs.get_file(name, str(staging))
            except BaseException:  # a download cut short leaves nothing behind in the output's cache
                staging.unlink(missing_ok=True)
                raise
            os.replace(staging, local)
            self.fetched[name] = local
        return self.fetched[name]

    def _part_rows(self, rows: datasets.Dataset, table: pa.Table, files: Iterable[str]) -> datasets.Dataset:
        """``table`` (``rows`` with their media) typed as ``rows`` are; the part is done with ``files``."""
        for name in files:
            self._release(name)
        return datasets.Dataset(table).cast(
            datasets.Features({name: rows.features[name] for name in table.column_names}))

    def _release(self, name: str) -> None:
        self.needed[name] -= 1
        if self.needed[name] <= 0 and name in self.fetched:
            os.unlink(self.fetched.pop(name))

    @abstractmethod
    def _index_file(self, name: str) -> pa.Table:
        """File ``name``'s rows less their media bytes, with where their media are (:data:`SOURCE_COLUMNS`)."""

    def _joined(self, tables: list[pa.Table]) -> pa.Table:
        """The index: the files' rows (their columns may differ: a missing one is nulls)."""
        return pa.concat_tables(tables, promote_options="permissive")

    @abstractmethod
    def materialize(self, rows: datasets.Dataset, folder: Path) -> datasets.Dataset:
        """``rows`` of the index with their media read from their files (fetched whole, once, into ``folder``),
        without the index's own columns; files no part still needs are removed from ``folder``."""

    @abstractmethod
    def read_rows(self, table: pa.Table) -> pa.Table:
        """``table`` (rows of the index) with their media read from their files by ranged reads (nothing is
        written to disk), without the index's own columns; a Ray task's read."""


class RemoteParquet(RemoteInput):
    """The Parquet files of a remote input: the index is every column but the media, whose ``path`` alone is read
    (a ranged read of the column chunks); a row's media come from its file's row (:data:`SOURCE_ROW`)."""

    suffix = ".parquet"

    def _index_file(self, name: str) -> pa.Table:
        with self.fs.open(name, "rb") as handle:
            file = pq.ParquetFile(handle)
            schema = file.schema_arrow
            media = _media_columns(schema)
            columns = [field.name for field in schema if field.name not in media]
            table = file.read(columns=[*columns, *(f"{column}.path" for column in media)])
        for column in media:  # {path} back to the feature's {bytes, path}, the bytes left in the file
            paths = table.column(column).combine_chunks().field("path")
            full = pa.StructArray.from_arrays([pa.nulls(len(paths), pa.binary()), paths], ["bytes", "path"])
            table = table.set_column(table.schema.get_field_index(column), column, full)
        table = table.replace_schema_metadata(schema.metadata)  # the datasets features (Audio)
        return (table.append_column(SOURCE_FILE, pa.array([name] * table.num_rows, pa.string()))
                .append_column(SOURCE_ROW, pa.array(range(table.num_rows), pa.int64())))

    def materialize(self, rows: datasets.Dataset, folder: Path) -> datasets.Dataset:
        table = rows.with_format("arrow")[:]
        media = _media_columns(table.schema)  # none: the files hold references only, and are not fetched
        files = _files(table) if media else []
        read = self._read_each(files, lambda name: (pq.read_table(self._fetch(name, folder), columns=media), None))
        table = _filled(table, media, read)
        return self._part_rows(rows, table, files)

    def read_rows(self, table: pa.Table) -> pa.Table:
        """Only the row groups that hold the rows are read."""
        media = _media_columns(table.schema)
        wanted: dict[str, set[int]] = {}
        for name, number in zip(table.column(SOURCE_FILE).to_pylist(), table.column(SOURCE_ROW).to_pylist()):
            if name is not None:
                wanted.setdefault(name, set()).add(number)
        read = self._read_each(wanted, lambda name: self._read_row_groups(name, wanted[name], media)) if media else {}
        return _filled(table, media, read)

    def _read_row_groups(self, name: str, numbers: set[int], media: list[str]) -> tuple[pa.Table, dict[int, int]]:
        """The ``media`` columns of the row groups of file ``name`` that hold rows ``numbers``, and where each of
        those rows is in them."""
        with self.fs.open(name, "rb") as handle:
            file = pq.ParquetFile(handle)
            sizes = [file.metadata.row_group(group).num_rows for group in range(file.num_row_groups)]
            starts = list(accumulate(sizes, initial=0))
            group_of = {number: bisect_right(starts, number) - 1 for number in numbers}
            groups = sorted(set(group_of.values()))
            table = file.read_row_groups(groups, columns=media)
        offsets = dict(zip(groups, accumulate((sizes[group] for group in groups), initial=0)))
        return table, {number: offsets[group] + number - starts[group] for number, group in group_of.items()}


def _files(table: pa.Table) -> list[str]:
    """The files an index table's rows are in, in order, once each."""
    return [name for name in dict.fromkeys(table.column(SOURCE_FILE).to_pylist()) if name is not None]


def _filled(table: pa.Table, media: Sequence[str], read: dict[str, tuple[pa.Table, dict[int, int] | None]]
            ) -> pa.Table:
    """``table`` with each media cell that has no bytes taken from ``read`` (per file: its media rows, and the
    position there of each row number, ``None`` for the whole file), less :data:`SOURCE_FILE`/:data:`SOURCE_ROW`.

    A row of no file (a clip no longer in the input, in a part a rerun rewrites), of a file that could not be read,
    or whose media are there already (a kept part's embedded audio) keeps its cell.
    """
    files, numbers = table.column(SOURCE_FILE).to_pylist(), table.column(SOURCE_ROW).to_pylist()
    for column in media:
        cells = table.column(column).to_pylist()
        for row, (name, number) in enumerate(zip(files, numbers)):
            if name in read and not (cells[row] or {}).get("bytes"):
                rows, positions = read[name]
                cells[row] = rows.column(column)[number if positions is None else positions[number]].as_py()
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array(cells, table.schema.field(column).type))
    return _without_source(table)


def _without_source(table: pa.Table) -> pa.Table:
    return table.drop_columns([name for name in SOURCE_COLUMNS if name in table.column_names])


class RemoteTars(RemoteInput):
    """The WebDataset shards of a remote input. A sample is the members that share a key (WebDataset's rule: the
    name up to its first dot); its row in the index holds its id (its JSON's ``id``, else its key), its audio
    member's name, offset (:data:`SOURCE_ROW`) and size (:data:`SOURCE_SIZE`), and its text members (``json``,
    ``txt``, ...) as columns named by their extension. Indexing reads the headers, seeking past the data between
    them, and the text members; a sample's audio is read a part at a time."""

    suffix = ".tar"

    def _index_file(self, name: str) -> pa.Table:
        samples: dict[str, dict[str, Any]] = {}
        with self.fs.open(name, "rb", block_size=_HEADER_READ) as handle, \
                tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:
                parts = WEBDATASET_KEY.match(member.name) if member.isfile() else None
                if parts is None:
                    continue
                key, extension = parts.groups()
                sample = samples.setdefault(key, {})
                if extension in WEBDATASET_AUDIO:
                    sample.setdefault("audio", {})[extension] = member
                elif extension in TAR_TEXTS:
                    sample[extension] = tar.extractfile(member).read().decode("utf-8", "replace")
        texts = sorted({extension for sample in samples.values() for extension in sample} - {"audio"})
        records, sources = [], []
        for key, sample in samples.items():
            members = sample.get("audio", {})
            audio = next((members[extension] for extension in WEBDATASET_AUDIO if extension in members), None)
            records.append({"id": _sample_id(sample.get("json")) or key, **{text: sample.get(text) for text in texts},
                            "audio": {"bytes": None, "path": PurePosixPath(audio.name).name} if audio else None})
            sources.append((name, audio.offset_data, audio.size) if audio else (None, None, None))
        table = pa.Table.from_pylist(records, schema=_tar_features(["id", *texts, "audio"]).arrow_schema)
        for column, values in zip(SOURCE_COLUMNS, zip(*sources) if sources else ([], [], [])):
            table = table.append_column(column, pa.array(values, pa.string() if column == SOURCE_FILE else pa.int64()))
        return table

    def _joined(self, tables: list[pa.Table]) -> pa.Table:
        table = super()._joined(tables)
        features = _tar_features([name for name in table.column_names if name not in SOURCE_COLUMNS])
        return table.replace_schema_metadata(features.arrow_schema.metadata)

    def materialize(self, rows: datasets.Dataset, folder: Path) -> datasets.Dataset:
        table = rows.with_format("arrow")[:]
        files = _files(table)
        fetched = self._read_each(files, lambda name: self._fetch(name, folder))
        with ExitStack() as stack:
            handles = {name: stack.enter_context(open(path, "rb")) for name, path in fetched.items()}

            def read(name: str, offset: int, size: int) -> bytes:
                handles[name].seek(offset)
                return handles[name].read(size)

            table = _with_members(table, read)
        return self._part_rows(rows, table, files)

    def read_rows(self, table: pa.Table) -> pa.Table:
        """One ranged read per sample."""
        return _with_members(table, lambda name, offset, size: self.fs.cat_file(name, start=offset, end=offset + size))


def _sample_id(text: str | None) -> str | None:
    """The ``id`` of a sample's JSON, where it holds a string one."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), str) else None


def _tar_features(columns: Sequence[str]) -> datasets.Features:
    return datasets.Features({name: datasets.Audio() if name == "audio" else datasets.Value("string")
                              for name in columns})


def _with_members(table: pa.Table, read: Callable[[str, int, int], bytes]) -> pa.Table:
    """``table`` with each audio cell that has no bytes given its member's (``read(file, offset, size)``), less
    the index's own columns; a member that cannot be read leaves its cell as it is (its clip's decode fails)."""
    cells = table.column("audio").to_pylist()
    where = zip(*(table.column(name).to_pylist() for name in SOURCE_COLUMNS))
    for row, (name, offset, size) in enumerate(where):
        if name is not None and not (cells[row] or {}).get("bytes"):
            try:
                cells[row] = {**cells[row], "bytes": read(name, offset, size)}
            except Exception as error:  # noqa: BLE001 - its clip's decode fails: a recorded error, retried later
                logger.warning("cannot read %s of %s: %s", cells[row]["path"], name,
                               redact(f"{type(error).__name__}: {error}"))
    table = table.set_column(table.schema.get_field_index("audio"), "audio",
                             pa.array(cells, table.schema.field("audio").type))
    return _without_source(table)
