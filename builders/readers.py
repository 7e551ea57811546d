"""Tolerant readers of metadata: CSV and the FusionAudio JSON, in a known or detected encoding.

A file is read as UTF-8 unless an encoding is given. A byte-order mark is dropped and said; a file that is
not valid in its encoding gets one warning (naming ``--encoding``) and its rows holding undecodable bytes
are skipped and counted (``undecodable_text``, with their lines), never read with replacement characters.
Every data line of a metadata file (every object of a JSON list) counts in the report's ``read``.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from fusion_datasets.builders.report import BuildReport
from fusion_datasets.errors import UserError

_UNDECODABLE = re.compile("[\udc80-\udcff]")  # the bytes surrogateescape kept
CSV_LINES, JSON_OBJECTS = "metadata lines", "JSON objects"  # the units of BuildReport.read


def open_text(path: Path, report: BuildReport, encoding: str | None = None) -> TextIO:
    """``path`` opened in ``encoding`` (default UTF-8, a BOM dropped and said); undecodable bytes stay as
    lone surrogates for :func:`undecodable` to find."""
    try:
        codec = codecs.lookup(encoding or "utf-8").name
    except LookupError:
        raise UserError(f"--encoding {encoding!r} is not an encoding Python knows (try utf-8, cp949, "
                        "cp1252, latin-1)") from None
    if codec in ("utf-8", "utf-8-sig"):
        with open(path, "rb") as handle:
            if handle.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 and encoding is None:
                report.warn(f"{path} starts with a UTF-8 byte-order mark (BOM): read as UTF-8 without it")
        codec = "utf-8-sig"
    return open(path, encoding=codec, errors="surrogateescape", newline="")


def undecodable(path: Path, report: BuildReport, where: str, values: Sequence[Any], encoding: str | None) -> bool:
    """Whether a row holds bytes its file's encoding could not decode: then it is skipped, and said once."""
    if not any(isinstance(value, str) and _UNDECODABLE.search(value) for value in values):
        return False
    report.warn(f"{path} is not valid {encoding or 'UTF-8'}: its rows with undecodable bytes are skipped "
                "(undecodable_text); give the file's encoding with --encoding (cp949, cp1252, ...)")
    report.skip("undecodable_text", where, "bytes not in the file's encoding")
    return True


def read_csv(
    path: Path,
    report: BuildReport,
    fieldnames: Sequence[str] | None = None,
    delimiter: str = ",",
    columns: Sequence[str] = (),
    extra_fields: bool = False,
    encoding: str | None = None,
    metadata: bool = True,
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` for each row of a CSV file; the header is the first line unless ``fieldnames``.

    Lines starting with ``#`` and blank lines are skipped; a line with the wrong number of fields (a
    truncated line, an unquoted comma) or undecodable bytes is reported and skipped. ``columns`` must be
    in the header. A file that only informs the build (a vocabulary, a label index) is not ``metadata``:
    its lines are not counted as read.
    """
    with open_text(path, report, encoding) as handle:
        reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
        header = list(fieldnames) if fieldnames else None
        while True:
            line = reader.line_num + 1
            try:
                values, error = next(reader), ""
            except StopIteration:
                return
            except csv.Error as caught:
                values, error = [], str(caught)
            if not (values or error) or values[:1] and values[0].startswith("#"):
                continue
            if header is None and not error:
                header = _header(path, line, values, columns, delimiter)
                continue
            if metadata:
                report.read[CSV_LINES] += 1
            if error:
                report.skip("bad_csv_line", f"{path}:{line}", error)
            elif len(values) < len(header) or (len(values) > len(header) and not extra_fields):
                report.skip("bad_csv_line", f"{path}:{line}", f"{len(values)} fields, expected {len(header)}")
            elif not undecodable(path, report, f"{path}:{line}", values, encoding):
                yield line, dict(zip(header, (value.strip() for value in values)))


def _header(path: Path, line: int, values: Sequence[str], columns: Sequence[str], delimiter: str) -> list[str]:
    """The header a CSV file's first line gives; one without ``columns`` (the file lost its header line, or it
    is another file) is a user error that quotes the line as read."""
    header = [value.strip() for value in values]
    absent = [column for column in columns if column not in header]
    if absent:
        separator = "" if delimiter == "," else f" separated by {delimiter!r}"
        raise UserError(
            f"{path}:{line}: expected the header line, naming the columns {', '.join(columns)}{separator}; read "
            f"{delimiter.join(values)!r} instead (no {', '.join(absent)}). If the file lost its header, put the "
            "dataset's own header line back first; if it is another file, give the right one with --data-file"
        )
    return header


def read_json_rows(path: Path, report: BuildReport, encoding: str | None = None,
                   normalize: Callable[[dict], dict] | None = None) -> Iterator[tuple[str, dict]]:
    """``(file:line, row)`` for each object of a JSON list (the FusionAudio format; ``normalize`` converts
    another layout's objects to it first).

    A truncated file keeps its complete rows; a row that is not an object is reported.
    """
    with open_text(path, report, encoding) as handle:
        text = handle.read()
    decoder = json.JSONDecoder()
    position, line = 0, 1

    def advance(to: int) -> int:
        nonlocal line
        line += text.count("\n", position, to)
        return to

    start = re.compile(r"\s*\[").match(text)
    if not start:
        raise UserError(f"{path}: expected a JSON list of rows")
    position = advance(start.end())
    separator = re.compile(r"[\s,]*")
    while True:
        position = advance(separator.match(text, position).end())
        if position >= len(text) or text[position] == "]":
            if position >= len(text):
                report.skip("truncated_json", f"{path}:{line}", "the list is not closed")
            return
        report.read[JSON_OBJECTS] += 1
        try:
            item, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            report.skip("truncated_json", f"{path}:{error.lineno}", error.msg)
            return
        where = f"{path}:{line}"
        position = advance(end)
        if isinstance(item, dict) and normalize:
            item = normalize(item)
        if not (isinstance(item, dict) and all(isinstance(item.get(key), str) for key in ("audio_id", "output"))):
            report.skip("bad_json_row", where, "not an object with string audio_id and output")
        elif not undecodable(path, report, where, list(item.values()), encoding):
            yield where, item
