"""The shared parts of the builders: the build report, safe paths, tolerant readers, the registry, ``build``.

A builder reads files a user has already downloaded. Bad rows (broken CSV lines, unknown labels,
missing audio, paths that escape the data folder) are reported with their file and line, skipped and
counted; they never stop a build. Missing clips also go to ``missing_clips.csv`` in the output.

Example:
    >>> report = build("esc50", "downloads/ESC-50-master", "data/esc50")  # doctest: +SKIP
    >>> report.written, dict(report.skipped)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import datasets
import yaml

from fusion_datasets.config import from_mapping
from fusion_datasets.pipeline.inputs import AUDIO_SUFFIXES, VIDEO_SUFFIXES, pair_media
from fusion_datasets.runtime import cache_dir

logger = logging.getLogger(__name__)

# The common names of downloaded AudioSet clips: <ytid>, Y<ytid>, <ytid>_<start>[_<end>] (or <start>-<end>).
_AUDIOSET_NAME = re.compile(r"^Y?([A-Za-z0-9_-]{11})(?:_(\d+(?:\.\d+)?)(?:[_-]\d+(?:\.\d+)?)?)?$")
STATS_FILE = "stats.json"
MISSING_FILE = "missing_clips.csv"
# A retrieval benchmark (AudioCaps test, Clotho evaluation): one row per clip and its captions.
RETRIEVAL_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "clip_id": datasets.Value("string"),
    "audio": datasets.Audio(),
    "captions": datasets.List(datasets.Value("string")),
})


@dataclass
class BuildReport:
    """What a build wrote, excluded (leakage guard) and skipped, by reason, with where each skip happened."""

    name: str
    written: int = 0
    excluded: int = 0
    skipped: Counter = field(default_factory=Counter)
    problems: list[dict[str, str]] = field(default_factory=list)
    missing: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    missing_manifest: str | None = None

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        """Count one skipped row; ``where`` is ``file:line``."""
        self.skipped[reason] += 1
        if reason != "missing_audio":  # missing clips are listed in the manifest instead
            self.problems.append({"reason": reason, "where": where, "detail": detail})
            logger.warning("%s: row skipped (%s) %s", where, reason, detail)

    def missing_clip(self, clip_id: str, where: str, reference: str) -> None:
        """Skip a row whose audio is not on disk; each clip is listed once in the manifest."""
        self.skip("missing_audio", where, reference)
        self.missing.setdefault((clip_id, reference), {"id": clip_id, "where": where, "reference": reference})

    def merge(self, other: BuildReport) -> None:
        """Add ``other`` (another config's pass over the same files: a row met twice counts once)."""
        self.written += other.written
        self.excluded += other.excluded
        seen = {(problem["reason"], problem["where"]) for problem in self.problems}
        again = [problem for problem in other.problems if (problem["reason"], problem["where"]) in seen]
        self.skipped.update(other.skipped - Counter(problem["reason"] for problem in again))
        self.problems += [problem for problem in other.problems if problem not in again]
        self.missing.update(other.missing)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "written": self.written, "excluded_benchmark_clips": self.excluded,
                "skipped": dict(self.skipped), "missing_clips": len(self.missing),
                "missing_manifest": self.missing_manifest, "problems": self.problems}

    def summary(self) -> str:
        """The report in a few lines, for the command line."""
        lines = [f"{self.name}: {self.written} rows written, {sum(self.skipped.values())} skipped, "
                 f"{self.excluded} excluded as benchmark clips"]
        lines += [f"  skipped ({reason}): {count}" for reason, count in sorted(self.skipped.items())]
        if self.missing_manifest:
            lines.append(f"  {len(self.missing)} missing clips listed in {self.missing_manifest}")
        return "\n".join(lines)


def media_stem(reference: str) -> str:
    """The file name of ``reference`` without its media suffix (AudioSet times like ``_30.000`` stay)."""
    name = PurePosixPath(reference.replace("\\", "/")).name
    suffix = PurePosixPath(name).suffix.lower()
    return name[: -len(suffix)] if suffix in AUDIO_SUFFIXES + VIDEO_SUFFIXES else name


def audioset_name(stem: str) -> tuple[str, float | None] | None:
    """``(YouTube id, start seconds or None)`` of a clip named in a common AudioSet layout, else None.

    Example:
        >>> audioset_name("Y--PJHxphWEs_30.000_40.000"), audioset_name("river_mouth3")
        (('--PJHxphWEs', 30.0), None)
    """
    match = _AUDIOSET_NAME.match(stem)
    return (match[1], float(match[2]) if match[2] else None) if match else None


def clip_key(reference: str) -> str:
    """The id the leakage guard compares: the YouTube id of an AudioSet-named clip, else the file stem."""
    stem = media_stem(reference)
    parsed = audioset_name(stem)
    return parsed[0] if parsed else stem


def inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` with links resolved when it stays under ``root``, else None (it escapes)."""
    base = root.resolve()
    path = (base / relative).resolve()
    return path if path.is_relative_to(base) else None


def read_csv(
    path: Path,
    report: BuildReport,
    fieldnames: Sequence[str] | None = None,
    delimiter: str = ",",
    columns: Sequence[str] = (),
    extra_fields: bool = False,
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` for each row of a CSV file; the header is the first line unless ``fieldnames``.

    Lines starting with ``#`` and blank lines are skipped; a line with the wrong number of fields (a
    truncated line, an unquoted comma) is reported and skipped. ``columns`` must be in the header.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
        header = list(fieldnames) if fieldnames else None
        while True:
            line = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                report.skip("bad_csv_line", f"{path}:{line}", str(error))
                continue
            if not values or values[0].startswith("#"):
                continue
            if header is None:
                header = [value.strip() for value in values]
                absent = [column for column in columns if column not in header]
                if absent:
                    raise ValueError(f"{path}: no column {', '.join(absent)} in the header {header}")
                continue
            if len(values) < len(header) or (len(values) > len(header) and not extra_fields):
                report.skip("bad_csv_line", f"{path}:{line}", f"{len(values)} fields, expected {len(header)}")
                continue
            yield line, dict(zip(header, (value.strip() for value in values)))


def read_json_rows(path: Path, report: BuildReport) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, row)`` for each object of a JSON list (the FusionAudio format).

    A truncated file keeps its complete rows; a row that is not an object is reported.
    """
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    decoder = json.JSONDecoder()
    position, line = 0, 1

    def advance(to: int) -> int:
        nonlocal line
        line += text.count("\n", position, to)
        return to

    start = re.compile(r"\s*\[").match(text)
    if not start:
        raise ValueError(f"{path}: expected a JSON list of rows")
    position = advance(start.end())
    separator = re.compile(r"[\s,]*")
    while True:
        position = advance(separator.match(text, position).end())
        if position >= len(text) or text[position] == "]":
            if position >= len(text):
                report.skip("truncated_json", f"{path}:{line}", "the list is not closed")
            return
        try:
            item, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            report.skip("truncated_json", f"{path}:{error.lineno}", error.msg)
            return
        where = f"{path}:{line}"
        position = advance(end)
        if isinstance(item, dict) and all(isinstance(item.get(key), str) for key in ("audio_id", "output")):
            yield where, item
        else:
            report.skip("bad_json_row", where, "not an object with string audio_id and output")


@dataclass
class BuildConfig(datasets.BuilderConfig):
    """Options every builder takes."""

    data_file: str | None = None  # the metadata or JSON file, when not the default one in data_dir
    audio_root: str | None = None  # the folder audio paths resolve in (default: data_dir)


class FusionBuilder(datasets.GeneratorBasedBuilder):
    """A ``datasets`` builder over local files that reports what it skips; subclasses write :meth:`rows`."""

    BUILDER_CONFIG_CLASS = BuildConfig
    FEATURES: ClassVar[datasets.Features]
    NAME: ClassVar[str] = ""
    TEST_SET: ClassVar[bool] = False  # a retrieval/QA test set: its clips are kept out of sources by default

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report = BuildReport(self.NAME)

    def _info(self) -> datasets.DatasetInfo:
        description = " ".join((self.__doc__ or "").split())
        return datasets.DatasetInfo(description=description, features=self.features())

    def features(self) -> datasets.Features:
        return self.FEATURES

    def splits(self) -> Sequence[str]:
        return ("test",)

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [datasets.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in self.splits()]

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for row in self.rows(split):
            self.report.written += 1
            yield row["id"], row

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def write_extras(self, output: Path) -> None:
        """Write files that go beside the data (a vocabulary); called once the splits are written."""

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir or ".")

    @property
    def audio_root(self) -> Path:
        return Path(self.config.audio_root) if self.config.audio_root else self.data_dir

    def data_file(self, default: str) -> Path:
        """``--data-file`` or ``default`` under the data folder; a missing one is a usage error."""
        path = Path(self.config.data_file) if self.config.data_file else self.data_dir / default
        if not path.is_file():
            raise FileNotFoundError(f"{self.NAME}: {path} not found (give --data-dir or --data-file)")
        return path

    def json_files(self, single: bool = True) -> list[Path]:
        """The FusionAudio-format JSON: ``--data-file``, else the data folder's ``*.json`` (one if single)."""
        given = self.config.data_file
        files = [Path(given)] if given else sorted(self.data_dir.glob("*.json"))
        if not files or (single and len(files) > 1) or not all(file.is_file() for file in files):
            raise FileNotFoundError(
                f"{self.NAME}: expected {'one' if single else 'a'} FusionAudio JSON file in {self.data_dir}, "
                f"found {[file.name for file in files]}; give --data-file"
            )
        return files

    def find_audio(self, reference: str, where: str, clip_id: str) -> str | None:
        """The audio file ``reference`` names under the audio root, or None (reported).

        ``reference`` is relative to the root, or a path from elsewhere (the authors' absolute paths):
        its longest tail that exists under the root is taken. A path with ``..`` is rejected.
        """
        parts = [part for part in PurePosixPath(reference.replace("\\", "/")).parts if part != "/"]
        if ".." in parts or not parts:
            self.report.skip("path_escapes_root", where, reference)
            return None
        for first in range(len(parts)):
            path = inside(self.audio_root, "/".join(parts[first:]))
            if path is None:
                self.report.skip("path_escapes_root", where, reference)
                return None
            if path.is_file():
                return str(path)
        self.report.missing_clip(clip_id, where, reference)
        return None


class ClipIndex:
    """Downloaded AudioSet/AudioCaps clips under a folder, found by YouTube id and start time."""

    def __init__(self, folder: Path) -> None:
        self.clips: dict[tuple[str, float | None], tuple[Path, Path | None, bool]] = {}
        for key, (audio, video) in pair_media(folder).items():
            parsed = audioset_name(PurePosixPath(key).name)
            if parsed:
                ytid, start = parsed
                clip = (audio or video, video, start is not None)
                self.clips[(ytid, start)] = clip
                self.clips.setdefault((ytid, None), clip)

    def find(self, ytid: str, start: float | None) -> tuple[Path, Path | None, bool] | None:
        """``(audio, video or None, whether the file name carries the segment's times)`` or None."""
        return self.clips.get((ytid, start)) or self.clips.get((ytid, None))


BUILDERS: dict[str, type[FusionBuilder]] = {}


def register(name: str) -> Any:
    """Class decorator: make a builder available to :func:`build` (and the command line) as ``name``."""

    def add(cls: type[FusionBuilder]) -> type[FusionBuilder]:
        cls.NAME = name
        BUILDERS[name] = cls
        return cls

    return add


def benchmark_clip_ids(*benchmarks: str | Path) -> set[str]:
    """The ``clip_id`` values (AudioSet YouTube ids, file stems) of built benchmarks: the leakage guard's set.

    Example:
        >>> benchmark_clip_ids("data/audiocaps", "data/clotho-aqa")  # doctest: +SKIP
    """
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for folder in map(Path, benchmarks):
        files = sorted(folder.rglob("*.parquet"))
        if not files:
            raise ValueError(f"exclude: {folder} holds no built benchmark (no Parquet files)")
        for file in files:
            if "clip_id" not in pq.read_schema(file).names:
                raise ValueError(f"exclude: {file} has no clip_id column (not a built benchmark)")
            ids.update(pq.read_table(file, columns=["clip_id"]).column("clip_id").to_pylist())
    return ids


def _benchmark_registry() -> Path:
    return cache_dir() / "benchmarks.json"


def recorded_benchmarks() -> list[Path]:
    """The retrieval and QA benchmarks built on this machine (that still exist): the leakage guard's default."""
    registry = _benchmark_registry()
    folders = json.loads(registry.read_text(encoding="utf-8")) if registry.is_file() else {}
    return [Path(folder) for folder in sorted(folders) if (Path(folder) / STATS_FILE).is_file()]


def _record_benchmark(name: str, output: Path) -> None:
    registry = _benchmark_registry()
    folders = json.loads(registry.read_text(encoding="utf-8")) if registry.is_file() else {}
    folders[str(output.resolve())] = name
    registry.parent.mkdir(parents=True, exist_ok=True)
    temporary = registry.with_name(f".{registry.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_text(json.dumps(folders, indent=2, sort_keys=True), encoding="utf-8")
    temporary.replace(registry)


def _check_output(output: Path) -> None:
    if output.exists() and any(output.iterdir()) and not (output / STATS_FILE).exists():
        raise ValueError(f"{output} is not empty and holds no earlier build ({STATS_FILE}); use a new folder")


def _write_splits(builder: FusionBuilder, output: Path, build_id: str) -> list[dict[str, str]]:
    # File names carry the build's id: `datasets` caches a local folder by its name and card, so a rebuilt
    # benchmark (or another folder of the same name) would otherwise load stale rows from the cache.
    features, files = builder.info.features, []
    for split, info in builder.info.splits.items():
        relative = f"data/{builder.config.name}/{split}-00000-of-00001-{build_id}.parquet"
        empty = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        (builder.as_dataset(split) if info.num_examples else empty).to_parquet(str(output / relative))
        files.append({"split": split, "path": relative})
    return files


def build(name: str, data_dir: str | Path, output: str | Path, **options: Any) -> BuildReport:
    """Build ``name`` from the files in ``data_dir`` into ``output``: Parquet in the Hub layout, a card,
    ``stats.json`` (the report) and, where clips are missing, ``missing_clips.csv``.

    ``options`` are the builder config's fields (``data_file``, ``audio_root``, ``exclude``, ...).
    """
    import fusion_datasets.builders  # noqa: F401 - registers every builder

    if name not in BUILDERS:
        raise ValueError(f"unknown builder {name!r}; choose one of {', '.join(sorted(BUILDERS))}")
    cls = BUILDERS[name]
    config = from_mapping(cls.BUILDER_CONFIG_CLASS, options)
    options = {key: getattr(config, key) for key in options}
    output = Path(output)
    _check_output(output)
    report, configs, build_id = BuildReport(name), [], uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="fusion-datasets-build-") as cache:
        presets = [preset.name for preset in cls.BUILDER_CONFIGS] or [None]
        builders = [cls(cache_dir=cache, config_name=preset, data_dir=str(data_dir), **options)
                    for preset in presets]
        for builder in builders:
            builder.download_and_prepare()
            report.merge(builder.report)
        shutil.rmtree(output / "data", ignore_errors=True)  # an earlier build's: replaced only now
        (output / MISSING_FILE).unlink(missing_ok=True)
        output.mkdir(parents=True, exist_ok=True)
        for builder in builders:
            files = _write_splits(builder, output, build_id)
            configs.append({"config_name": builder.config.name, "data_files": files})
            builder.write_extras(output)
    if report.missing:
        with open(output / MISSING_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["id", "where", "reference"])
            writer.writeheader()
            writer.writerows(report.missing.values())
        report.missing_manifest = str(output / MISSING_FILE)
        logger.warning("%s: %d clips missing on disk, listed in %s", name, len(report.missing), MISSING_FILE)
    card = yaml.safe_dump({"configs": configs}, sort_keys=False)
    title = f"# {name}\n\nBuilt by `fusion-datasets build {name}`.\n"
    (output / "README.md").write_text(f"---\n{card}---\n\n{title}")
    (output / STATS_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if cls.TEST_SET:
        _record_benchmark(name, output)
    return report
