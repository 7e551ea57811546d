"""The shared parts of the builders: the builder base class, the clip index, the registry, ``build``.

A builder reads files a user has already downloaded. Bad rows (broken CSV lines, unknown labels,
missing audio, paths that escape the data folder) are reported with their file and line, skipped and
counted; they never stop a build. Missing clips also go to ``missing_clips.csv`` in the output. A build
that writes no row at all is a mistake (a wrong folder): it stops with the counts, unless ``allow_empty``.
Audio paths are stored absolute (``os.path.abspath``, links kept), so a build loads from any directory.

Example:
    >>> report = build("esc50", "downloads/ESC-50-master", "data/esc50")  # doctest: +SKIP
    >>> report.written, dict(report.skipped)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import Field, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import datasets
import yaml

from fusion_datasets.builders.leakage import CLIPS_FILE, BenchmarkClips, record_benchmark
from fusion_datasets.builders.names import audioset_name, media_stem, reference_parts, split_of_file
from fusion_datasets.builders.readers import read_csv, read_json_rows
from fusion_datasets.builders.report import STATS_FILE, BuildReport, amount
from fusion_datasets.config import from_mapping
from fusion_datasets.errors import UserError
from fusion_datasets.files import write_text_atomically
from fusion_datasets.media_files import pair_media

MISSING_FILE = "missing_clips.csv"


def option(help: str, default: Any = None, metavar: str | None = None, off: str | None = None) -> Any:
    """A builder config field that is also an option of ``fusion-datasets build NAME`` (``--field-name``).

    A true-by-default field is the flag ``--no-field-name``: ``help`` says what holds by default, ``off``
    what holds with the flag. Every option is ``--set name=value`` too.
    """
    return field(default=default, metadata={"help": help, "metavar": metavar, "off": off})


@dataclass
class BuildConfig(datasets.BuilderConfig):
    """Options every builder takes."""

    data_file: str | None = option("the metadata or FusionAudio JSON file, if not the default one", metavar="FILE")
    audio_root: str | None = option("the folder audio paths resolve in (default: --data-dir)", metavar="DIR")
    split: str | None = option("the split built (default: what --data-file's name says, else the builder's)",
                               metavar="NAME")
    encoding: str | None = option("the metadata's text encoding, when not UTF-8 (cp949, cp1252, ...)",
                                  metavar="CODEC")


class FusionBuilder(datasets.GeneratorBasedBuilder):
    """A ``datasets`` builder over local files that reports what it skips; subclasses write :meth:`rows`.

    A benchmark's builder adds every clip its metadata names, found or not, to ``benchmark_clips``.
    """

    BUILDER_CONFIG_CLASS = BuildConfig
    FEATURES: ClassVar[datasets.Features]
    NAME: ClassVar[str] = ""
    TEST_SET: ClassVar[bool] = False  # a retrieval/QA test set: its clips are kept out of sources by default
    METADATA: ClassVar[dict[str, str]] = {}  # split -> its metadata file under the data folder
    COLUMNS: ClassVar[tuple[str, ...]] = ()  # the columns its metadata CSV's header must name
    ROW_UNIT: ClassVar[str] = "clips"  # what a row of the built dataset is, in the build's summary

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report = BuildReport(self.NAME, written=Counter({self.row_unit: 0}))
        self.benchmark_clips = BenchmarkClips()

    @classmethod
    def options(cls) -> list[Field]:
        """The config fields a user sets (``data_file``, ``vocabulary``, ...): those made by :func:`option`."""
        return [item for item in fields(cls.BUILDER_CONFIG_CLASS) if "help" in item.metadata]

    @property
    def row_unit(self) -> str:
        return self.ROW_UNIT

    def _info(self) -> datasets.DatasetInfo:
        description = " ".join((self.__doc__ or "").split())
        return datasets.DatasetInfo(description=description, features=self.features())

    def features(self) -> datasets.Features:
        return self.FEATURES

    def splits(self) -> Sequence[str]:
        return (self.split_name(),)

    def split_of(self, file: str) -> str | None:
        """The split a metadata file's name says: the builder's own file names first (FSD50K's ``eval.csv``)."""
        known = {PurePosixPath(name).name: split for split, name in self.METADATA.items()}
        return known.get(Path(file).name) or split_of_file(file)

    def split_name(self) -> str:
        """``--split``, else the split ``--data-file``'s name says (a mismatch is warned about), else test."""
        given, file = self.config.split, self.config.data_file
        named = self.split_of(file) if file else None
        if given and named and given != named:
            self.report.warn(f"--split {given}, but {file} is named as a {named} file: built as {given}")
        split = given or named or "test"
        if not re.fullmatch(r"\w+", split):
            raise UserError(f"--split {split!r}: a split name is letters, digits and _ (train, validation, test)")
        return split

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [datasets.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in self.splits()]

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for row in self.rows(split):
            self.report.written[self.row_unit] += 1
            yield row["id"], row

    def rows(self, split: str) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def write_extras(self, output: Path) -> None:
        """Write files that go beside the data (a vocabulary); called once the splits are written."""

    @property
    def data_dir(self) -> Path:
        return Path(os.path.abspath(self.config.data_dir or "."))

    @property
    def audio_root(self) -> Path:
        return Path(os.path.abspath(self.config.audio_root)) if self.config.audio_root else self.data_dir

    def data_file(self, default: str) -> Path:
        """``--data-file`` or ``default`` under the data folder; a missing one is a usage error."""
        path = Path(self.config.data_file) if self.config.data_file else self.data_dir / default
        if not path.is_file():
            raise FileNotFoundError(f"{self.NAME}: {path} not found (give --data-dir or --data-file)")
        return path

    def metadata_file(self, split: str) -> Path:
        """``--data-file``, else the metadata file of ``split`` under the data folder."""
        if split not in self.METADATA and not self.config.data_file:
            raise UserError(f"{self.NAME}: no metadata file is known for the split {split!r} (known: "
                            f"{', '.join(self.METADATA)}); give --data-file")
        return self.data_file(self.METADATA.get(split, ""))

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

    def read_csv(self, path: Path, **options: Any) -> Iterator[tuple[int, dict[str, str]]]:
        """:func:`~fusion_datasets.builders.readers.read_csv` in the build's encoding, reporting to this build."""
        return read_csv(path, self.report, encoding=self.config.encoding, **options)

    def read_json(self, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
        """:func:`~fusion_datasets.builders.readers.read_json_rows` in the build's encoding."""
        return read_json_rows(path, self.report, self.config.encoding)

    def find_audio(self, reference: str, where: str, clip_id: str) -> str | None:
        """The absolute path of the audio file ``reference`` names under the audio root, or None (reported).

        ``reference`` is relative to the root, or a path from elsewhere (the authors' absolute paths):
        its longest tail that exists under the root is taken. One that climbs out with ``..`` is rejected;
        symlinks under the root are followed (they are the user's layout).
        """
        parts = reference_parts(reference)
        if parts is None:
            self.report.skip("path_escapes_root" if reference.strip() else "empty_field", where, reference)
            return None
        for first in range(len(parts)):
            path = self.audio_root.joinpath(*parts[first:])
            if path.is_file():
                return str(path)
        self.report.missing_clip(clip_id, where, reference)
        return None


class ClipIndex:
    """Downloaded AudioSet/AudioCaps clips under a folder, found by YouTube id and start time."""

    def __init__(self, folder: Path) -> None:
        self.clips: dict[tuple[str, float | None], tuple[Path, Path | None, bool]] = {}
        for key, (audio, video) in pair_media(Path(os.path.abspath(folder))).items():
            parsed = audioset_name(media_stem(key))  # a key keeps its suffix where two files share a stem
            if parsed:
                self.clips[parsed] = (audio or video, video, parsed[1] is not None)

    def find(self, ytid: str, start: float | None) -> tuple[Path, Path | None, bool] | None:
        """``(audio, video or None, whether the file name carries the segment's times)`` or None.

        A file named with a start time holds that segment only; one named by the YouTube id alone is taken
        for any start (it holds the clip, or the whole video).
        """
        return self.clips.get((ytid, start)) or self.clips.get((ytid, None))


BUILDERS: dict[str, type[FusionBuilder]] = {}


def register(name: str) -> Any:
    """Class decorator: make a builder available to :func:`build` (and the command line) as ``name``."""

    def add(cls: type[FusionBuilder]) -> type[FusionBuilder]:
        cls.NAME = name
        BUILDERS[name] = cls
        return cls

    return add


def _check_folders(data_dir: Path, output: Path, audio_root: str | None) -> None:
    for option, folder in (("--data-dir", data_dir), ("--audio-root", audio_root)):
        if folder is not None and not Path(folder).is_dir():
            raise UserError(f"{option} {folder} is not a folder; give the folder that holds the downloaded files")
    if output.exists() and any(output.iterdir()) and not (output / STATS_FILE).exists():
        raise UserError(f"{output} is not empty and holds no earlier build ({STATS_FILE}); use a new folder")


# What to do when most rows were skipped for a reason other than their audio; else check the folders.
_ADVICE = {
    "undecodable_text": "Give the metadata's text encoding with --encoding (cp949, cp1252, ...)",
    "bad_csv_line": "Check that the metadata is the dataset's own file (--data-file), with its delimiter and columns",
    "unknown_label": "Check that the vocabulary or label index given is the dataset's own",
}


def _nothing_written(report: BuildReport, data_dir: Path, audio_root: str | None) -> UserError:
    first, most = report.first_problem(), report.skipped.most_common(1)
    folders = f"Check --data-dir and --audio-root (audio is looked up under {os.path.abspath(audio_root or data_dir)})"
    advice = _ADVICE.get(most[0][0], folders) if most else folders
    return UserError(
        f"{report.name}: no rows to write from {data_dir}: {report.counts()}"
        + (f"; the first: {first}" if first else "")
        + f". {advice}; nothing was written. Pass --allow-empty to write an empty dataset all the same."
    )


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


def build(name: str, data_dir: str | Path, output: str | Path, *, allow_empty: bool = False,
          **options: Any) -> BuildReport:
    """Build ``name`` from the files in ``data_dir`` into ``output``: Parquet in the Hub layout, a card,
    ``stats.json`` (the report), ``benchmark_clips.csv`` for a benchmark and, where clips are missing,
    ``missing_clips.csv``. A build that would write no row raises :class:`UserError` unless ``allow_empty``.

    ``options`` are the builder config's fields (``data_file``, ``audio_root``, ``split``, ``exclude``, ...).
    """
    import fusion_datasets.builders  # noqa: F401 - registers every builder

    if name not in BUILDERS:
        raise UserError(f"unknown builder {name!r}; choose one of {', '.join(sorted(BUILDERS))}")
    cls = BUILDERS[name]
    config = from_mapping(cls.BUILDER_CONFIG_CLASS, options)
    options = {key: getattr(config, key) for key in options}
    data_dir, output = Path(data_dir), Path(output)
    _check_folders(data_dir, output, config.audio_root)
    report, configs, build_id, clips = BuildReport(name), [], uuid.uuid4().hex[:8], BenchmarkClips()
    with tempfile.TemporaryDirectory(prefix="fusion-datasets-build-") as cache:
        presets = [preset.name for preset in cls.BUILDER_CONFIGS] or [None]
        builders = [cls(cache_dir=cache, config_name=preset, data_dir=str(data_dir), **options)
                    for preset in presets]
        for builder in builders:
            try:
                builder.download_and_prepare()
            except datasets.exceptions.DatasetGenerationError as error:  # a user's mistake met mid-build
                if isinstance(error.__cause__, (UserError, OSError)):
                    raise error.__cause__ from None
                raise
            report.merge(builder.report)
            clips.update(builder.benchmark_clips)
        splits = list(dict.fromkeys(split for builder in builders for split in builder.info.splits))
        report.notes["splits"] = splits
        if not report.written.total() and not allow_empty:
            raise _nothing_written(report, data_dir, config.audio_root)
        shutil.rmtree(output / "data", ignore_errors=True)  # an earlier build's: replaced only now
        for stale in (MISSING_FILE, CLIPS_FILE):
            (output / stale).unlink(missing_ok=True)
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
        report.warn(f"{amount(len(report.missing), 'clips')} missing on disk, listed in {report.missing_manifest}")
    if len(clips):
        clips.write(output / CLIPS_FILE)
        report.notes["benchmark_clips"] = len(clips)
    if cls.TEST_SET:
        report.notes["leakage_guard"] = "recorded" if record_benchmark(name, output, splits) else "not a test set"
    card = yaml.safe_dump({"configs": configs}, sort_keys=False)
    title = f"# {name}\n\nBuilt by `fusion-datasets build {name}`.\n"
    write_text_atomically(output / "README.md", f"---\n{card}---\n\n{title}")
    write_text_atomically(output / STATS_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
