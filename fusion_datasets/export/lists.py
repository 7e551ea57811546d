"""Exports that list each clip's file with its texts: one JSON item per caption or pair, joined at the end.

Each part's items go to a JSON-lines fragment; the joined file is JSON lines (``messages``) or one JSON
document around the items (``wavcaps``, ``fusionaudio``), written item by item so that memory stays flat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from fusion_datasets.export.base import ClipFiles, Exporter, Part, PartResult, write_atomically


class ListExporter(Exporter):
    """Subclasses set ``file`` and implement :meth:`items`; ``head``/``tail`` wrap a JSON document's items."""

    file: ClassVar[str]
    head: ClassVar[bytes | None] = None  # None: the joined file is JSON lines
    tail: ClassVar[bytes] = b"]\n"

    def __init__(self, folder: Path, audio_root: str | None = None, **options: Any) -> None:
        super().__init__(folder, audio_root=audio_root, **options)
        self.clips = ClipFiles(folder, audio_root)
        self.joined = {self.file: ".jsonl"}

    def items(self, row: dict[str, Any], audio: str, duration: float, pairs: list[dict[str, str]],
              result: PartResult) -> list[dict[str, Any]]:
        """The items of one clip, whose audio is the file ``audio`` (as the export names it); counts them."""
        raise NotImplementedError

    def write_part(self, part: Part, result: PartResult) -> None:
        pairs, lines = part.pairs(), []
        for row in part.rows():
            located = self.clips.locate(row, result)
            if located is not None:
                file, duration = located
                items = self.items(row, self.clips.reference(file), duration, pairs.get(row["id"], []), result)
                lines += [json.dumps(item, ensure_ascii=False) + "\n" for item in items]
        write_atomically(self.fragment(part.name, ".jsonl"), "".join(lines).encode("utf-8"))

    def join(self, name: str, fragments: list[Path], out: BinaryIO) -> None:
        if self.head is None:
            super().join(name, fragments, out)
            return
        out.write(self.head)
        first = True
        for path in fragments:
            with open(path, "rb") as handle:
                for line in handle:
                    out.write(line.rstrip(b"\n") if first else b",\n" + line.rstrip(b"\n"))
                    first = False
        out.write(b"\n" + self.tail)
