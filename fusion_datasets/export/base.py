"""What every export shares: the run's captions read part by part, its state for resuming, its summary.

An export reads the output's committed parts (the files its card lists), one at a time and a few rows at a
time, so its memory stays flat in the dataset's size. Each part's files are written beside their place and
renamed into it; ``export.json`` then records the part (its files and counts), so a rerun skips the parts
done, removes the files of parts the output no longer has (replaced by a redo) and writes the new ones.
Files that join every part (a JSON list, a manifest) are rebuilt at the end from the parts' fragments in
``.parts/``. The summary in ``export.json`` says what was written and what was skipped, and why.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq

from fusion_datasets.clip_audio import encode_flac, local_file
from fusion_datasets.errors import UserError
from fusion_datasets.files import temporary_path, write_text_atomically
from fusion_datasets.layout import config_files
from fusion_datasets.media import MediaError, Waveform, claimed_duration, decode_audio

logger = logging.getLogger(__name__)

SUMMARY = "export.json"
FRAGMENTS = ".parts"  # each part's share of the files that join every part
_READ = ("id", "audio", "start", "end", "caption", "source", "audio_tags")
_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ROWS_PER_BATCH = 16  # rows read at once: a few clips' embedded audio, not a part's


def sample_key(clip_id: str) -> str:
    """A file-name stem for a clip: its id where it is letters, digits, ``_`` and ``-`` only (WebDataset splits a
    key at its first dot), else the id so cleaned plus 8 hex digits of its sha1, unique per id.

    Example:
        >>> sample_key("dog_bark-1"), sample_key("rec/a@10-20")
        ('dog_bark-1', 'rec_a_10-20-5c9e624b')
    """
    if _KEY.fullmatch(clip_id):
        return clip_id
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', clip_id)}-{sha1(clip_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Part:
    """One committed part of a run: its captions file and its QA file (where it has one)."""

    name: str
    captions: Path
    qa: Path | None

    def rows(self) -> Iterator[dict[str, Any]]:
        """The part's captions, a few rows at a time (audio left as stored: a path or ``{bytes, path}``)."""
        parquet = pq.ParquetFile(self.captions)
        columns = [name for name in _READ if name in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=_ROWS_PER_BATCH, columns=columns):
            yield from batch.to_pylist()

    def pairs(self) -> dict[str, list[dict[str, str]]]:
        """The part's QA pairs by clip id (text only: small)."""
        if self.qa is None:
            return {}
        pairs: dict[str, list[dict[str, str]]] = {}
        for pair in pq.read_table(self.qa, columns=["clip_id", "question", "answer", "qa_type"]).to_pylist():
            pairs.setdefault(pair["clip_id"], []).append(pair)
        return pairs


def run_parts(root: Path) -> list[Part]:
    """The committed parts of the output ``root`` that have captions, in the order its card lists them."""
    captions = config_files(root, "captions")
    if not captions:
        raise UserError(f"{root} has no captions to export: it is not a run output, or no clip has a kept caption "
                        "yet (its card lists no data/captions/ files)")
    qa = {path.stem: path for path in config_files(root, "qa")}
    return [Part(path.stem, path, qa.get(path.stem)) for path in captions]


def decode_clip(row: Mapping[str, Any]) -> Waveform:
    """A row's clip: its embedded bytes as they are (an embedded segment is the segment), else its file's range."""
    audio = row.get("audio")
    if isinstance(audio, dict) and audio.get("bytes"):
        return decode_audio(audio)
    return decode_audio(local_file(audio), row.get("start"), row.get("end"))


def caption_texts(row: Mapping[str, Any], pairs: list[dict[str, str]], with_qa: bool) -> str | list[str]:
    """A clip's training text: its caption, or (``with_qa``) the caption then each QA pair as one sentence."""
    if not with_qa or not pairs:
        return row["caption"]
    return [row["caption"], *(f"{pair['question']} {pair['answer']}" for pair in pairs)]


@dataclass
class PartResult:
    """What one part gave: its files (relative to the export folder) and its counts."""

    files: list[str] = field(default_factory=list)
    written: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, clip_id: str, message: str) -> None:
        self.skipped[reason] += 1
        logger.warning("export: skipped %s (%s): %s", clip_id, reason, message)


class ClipFiles:
    """Where a clip's audio is for the formats that name a file: its own file when the clip is a whole file on
    this machine; otherwise (embedded, a segment) a FLAC of the clip written to ``audio/<key>.flac``. Paths are
    absolute, or relative to ``audio_root`` where they lie under it."""

    def __init__(self, folder: Path, audio_root: str | None) -> None:
        self.folder = folder
        self.audio_root = audio_root

    def reference(self, path: str) -> str:
        from fusion_datasets.export.fusionaudio import audio_file

        return audio_file(os.path.abspath(path), self.audio_root) or path

    def source(self, row: Mapping[str, Any], result: PartResult) -> tuple[str, float] | None:
        """``(file, duration)`` of the file a row names (the whole file), or ``None``: none, or unreadable (skipped,
        recorded in ``result``)."""
        file = local_file(row.get("audio"))
        duration = claimed_duration(file) if file is not None and os.path.isfile(file) else None
        if duration is None:
            result.skip("audio_unreadable", row["id"], f"{file} is missing or not audio")
            return None
        return file, duration

    def locate(self, row: Mapping[str, Any], result: PartResult) -> tuple[str, float] | None:
        """``(file, duration)`` of a row's clip, or ``None``: skipped (recorded in ``result``). A written file is
        listed in ``result.files``."""
        if local_file(row.get("audio")) is not None and row.get("start") is None and row.get("end") is None:
            return self.source(row, result)
        try:
            waveform = decode_clip(row)
        except MediaError as error:
            result.skip("audio_unreadable", row["id"], str(error))
            return None
        name = f"audio/{sample_key(row['id'])}.flac"
        write_atomically(self.folder / name, encode_flac(waveform.samples, waveform.sampling_rate))
        result.files.append(name)
        return str(self.folder / name), waveform.duration


def write_atomically(path: Path, data: bytes) -> None:
    temporary = temporary_path(path)
    temporary.write_bytes(data)
    os.replace(temporary, path)


class Exporter:
    """One format. ``write_part`` writes a part's files; ``finish`` joins what joins every part.

    Subclasses set ``format``, ``joined`` (the files built from every part's fragment, in part order:
    ``{file: fragment suffix}``) and ``part_files`` (globs of the files parts write, which a rerun removes where
    no part records them), and implement :meth:`write_part`; :meth:`join` writes a joined file.
    """

    format: ClassVar[str]
    joined: ClassVar[dict[str, str]] = {}
    part_files: ClassVar[tuple[str, ...]] = ("audio/*.flac",)  # globs of the parts' own files

    def __init__(self, folder: Path, **options: Any) -> None:
        self.folder = folder
        self.options = options

    def fragment(self, part: str, suffix: str) -> Path:
        return self.folder / FRAGMENTS / f"{part}{suffix}"

    def write_part(self, part: Part, result: PartResult) -> None:
        raise NotImplementedError

    def finish(self, parts: list[str]) -> list[str]:
        """Write the joined files from the parts' fragments (in ``parts`` order); returns their names."""
        for name, suffix in self.joined.items():
            fragments = [self.fragment(part, suffix) for part in parts]
            temporary = temporary_path(self.folder / name)
            with open(temporary, "wb") as out:
                self.join(name, [path for path in fragments if path.is_file()], out)
            os.replace(temporary, self.folder / name)
        return list(self.joined)

    def join(self, name: str, fragments: list[Path], out: Any) -> None:
        """Concatenate ``fragments`` into ``out`` (JSONL, gzip members); formats of one JSON document override."""
        for path in fragments:
            with open(path, "rb") as handle:
                shutil.copyfileobj(handle, out)


@dataclass(frozen=True)
class ExportSummary:
    """``export.json``: the format and options, each part's files and counts, and the totals."""

    folder: Path
    data: dict[str, Any]

    @property
    def written(self) -> dict[str, int]:
        return self.data["written"]

    @property
    def skipped(self) -> dict[str, int]:
        return self.data["skipped"]

    def line(self) -> str:
        """One line for the command line: what was written, what was skipped and why, where."""
        written = ", ".join(f"{count} {name}" for name, count in self.written.items()) or "nothing"
        skipped = ", ".join(f"{count} {name}" for name, count in self.skipped.items())
        return (f"{self.data['format']} export of {self.data['parts_total']} parts: {written}"
                f"{f'; skipped {skipped}' if skipped else ''} ({self.folder / SUMMARY})")


def run_export(root: Path, exporter: Exporter) -> ExportSummary:
    """Export the output ``root`` with ``exporter`` into its folder, resuming what ``export.json`` records."""
    folder = exporter.folder
    folder.mkdir(parents=True, exist_ok=True)
    parts = run_parts(root)
    state = _load_state(folder, exporter)
    done: dict[str, Any] = state["parts"]
    names = [part.name for part in parts]
    for name in [name for name in done if name not in names]:  # replaced by a redo of the run
        for file in done.pop(name)["files"]:
            (folder / file).unlink(missing_ok=True)
        for suffix in exporter.joined.values():
            exporter.fragment(name, suffix).unlink(missing_ok=True)
    recorded = {file for entry in done.values() for file in entry["files"]}
    for pattern in exporter.part_files:  # what a killed export wrote for a part it did not record
        for path in folder.glob(pattern):
            if path.relative_to(folder).as_posix() not in recorded:
                path.unlink()
    for part in parts:
        if part.name in done:
            continue
        result = PartResult()
        exporter.write_part(part, result)
        done[part.name] = {"files": result.files, "written": dict(result.written), "skipped": dict(result.skipped)}
        _save(folder, state, exporter, names)
        logger.info("exported part %s: %s", part.name, dict(result.written))
    files = exporter.finish(names)
    return ExportSummary(folder, _save(folder, state, exporter, names, files))


def _load_state(folder: Path, exporter: Exporter) -> dict[str, Any]:
    path = folder / SUMMARY
    if not path.is_file():
        if any(folder.iterdir()):
            raise UserError(f"{folder} is not empty and holds no {SUMMARY}: export into a new or empty folder")
        return {"parts": {}}
    state = json.loads(path.read_text(encoding="utf-8"))
    if (state.get("format"), state.get("options")) != (exporter.format, _public(exporter.options)):
        raise UserError(f"{folder} holds a {state.get('format')} export with options {state.get('options')}; this "
                        f"one is {exporter.format} with {_public(exporter.options)}: export into another folder, "
                        "or delete it first")
    return state


def _public(options: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _save(folder: Path, state: dict[str, Any], exporter: Exporter, names: list[str],
          joined: list[str] | None = None) -> dict[str, Any]:
    parts = state["parts"]
    written: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for entry in parts.values():
        written.update(entry["written"])
        skipped.update(entry["skipped"])
    state.update(format=exporter.format, options=_public(exporter.options), parts_total=len(names),
                 complete=joined is not None and set(names) <= set(parts), written=dict(written),
                 skipped=dict(skipped), joined=joined or [], parts=parts)
    write_text_atomically(folder / SUMMARY, json.dumps(state, indent=2, ensure_ascii=False) + "\n")
    return state
