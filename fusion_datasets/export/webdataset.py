"""LAION-CLAP's training layout: ``{split}/{n}.tar`` WebDataset shards and ``{split}/sizes.json``.

Each sample is ``<key>.flac`` (the clip, mono, 48 kHz, 16-bit FLAC) and ``<key>.json`` (``text``: the caption,
or the caption and the clip's QA pairs as sentences with ``with_qa``; ``tag``: the AudioSet labels; ``id``, the
clip's id; ``original_data``: its source and range). A shard closes before it would pass ``shard_samples``
samples or ``shard_bytes`` bytes; shards never span parts, so a rerun rewrites only new parts' shards.
``sizes.json`` maps each shard's file name to its samples, as LAION-CLAP's loader reads it.

Example:
    >>> import webdataset
    >>> from fusion_datasets.export import export
    >>> export("out", "webdataset", "shards").written
    {'clips': 4, 'qa_texts': 0, 'shards': 2}
    >>> sample = next(iter(webdataset.WebDataset("shards/train/0.tar", shardshuffle=False)))
    >>> sorted(json.loads(sample["json"]))
    ['id', 'original_data', 'tag', 'text']
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, ClassVar

from fusion_datasets.clip_audio import encode_flac
from fusion_datasets.export.base import Exporter, Part, PartResult, caption_texts, decode_clip, sample_key
from fusion_datasets.files import temporary_path, write_text_atomically
from fusion_datasets.media import MediaError, resample

SAMPLING_RATE = 48000  # LAION-CLAP's
SAMPLE_FILES = ("flac", "json")


class _Shard:
    """A tar being written beside its place; ``close`` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temporary = temporary_path(path)
        self.tar = tarfile.open(self.temporary, "w")
        self.samples = 0
        self.bytes = 0

    def add(self, key: str, files: dict[str, bytes]) -> None:
        for suffix, data in files.items():
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mode = len(data), 0o644
            self.tar.addfile(info, io.BytesIO(data))
            self.bytes += len(data) + 1024  # the header and the padding, about
        self.samples += 1

    def close(self) -> None:
        self.tar.close()
        self.temporary.replace(self.path)


class WebDatasetExporter(Exporter):
    format = "webdataset"
    part_files: ClassVar[tuple[str, ...]] = ("*/*.tar",)

    def __init__(self, folder: Path, split: str = "train", shard_samples: int = 1000,
                 shard_bytes: int = 1_000_000_000, with_qa: bool = False) -> None:
        if shard_samples < 1 or shard_bytes < 1:
            raise ValueError(f"shard_samples and shard_bytes must be >= 1, got {shard_samples} and {shard_bytes}")
        if not split or "/" in split:
            raise ValueError(f"split must be a folder name, got {split!r}")
        super().__init__(folder, split=split, shard_samples=shard_samples, shard_bytes=shard_bytes, with_qa=with_qa)
        self.split = folder / split

    def _next_shard(self) -> _Shard:
        numbers = [int(path.stem) for path in self.split.glob("*.tar") if path.stem.isdigit()]
        return _Shard(self.split / f"{max(numbers, default=-1) + 1}.tar")

    def _sample(self, row: dict[str, Any], pairs: list[dict[str, str]]) -> dict[str, bytes]:
        samples = resample(decode_clip(row), SAMPLING_RATE)
        text = {"text": caption_texts(row, pairs, self.options["with_qa"]),
                "tag": [tag["label"] for tag in row.get("audio_tags") or []], "id": row["id"],
                "original_data": {"source": row.get("source"), "start": row.get("start"), "end": row.get("end")}}
        return {"flac": encode_flac(samples, SAMPLING_RATE),
                "json": json.dumps(text, ensure_ascii=False).encode("utf-8")}

    def write_part(self, part: Part, result: PartResult) -> None:
        pairs, shard = part.pairs(), None
        for row in part.rows():
            try:
                files = self._sample(row, pairs.get(row["id"], []))
            except MediaError as error:
                result.skip("audio_unreadable", row["id"], str(error))
                continue
            size = sum(len(data) + 1024 for data in files.values())
            if shard is not None and (shard.samples >= self.options["shard_samples"]
                                      or shard.bytes + size > self.options["shard_bytes"]):
                self._close(shard, result)
                shard = None
            shard = shard or self._next_shard()
            shard.add(sample_key(row["id"]), files)
            result.written["clips"] += 1
            result.written["qa_texts"] += len(pairs.get(row["id"], [])) if self.options["with_qa"] else 0
        if shard is not None:
            self._close(shard, result)

    def _close(self, shard: _Shard, result: PartResult) -> None:
        shard.close()
        result.files.append(shard.path.relative_to(self.folder).as_posix())
        result.written["shards"] += 1

    def finish(self, parts: list[str]) -> list[str]:
        """``{split}/sizes.json``: each shard on disk (every one a recorded part wrote) and its samples, counted
        from the tar's headers (two files a sample)."""
        shards = sorted(self.split.glob("*.tar"), key=lambda path: int(path.stem))
        sizes = {}
        for path in shards:
            with tarfile.open(path) as tar:
                sizes[path.name] = len(tar.getmembers()) // len(SAMPLE_FILES)
        write_text_atomically(self.split / "sizes.json", json.dumps(sizes, indent=2) + "\n")
        return [f"{self.split.name}/sizes.json"]
