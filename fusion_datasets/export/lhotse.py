"""Lhotse manifests: ``recordings.jsonl.gz``, ``supervisions.jsonl.gz`` and ``cuts.jsonl.gz``.

One recording per clip (id: the clip's key, :func:`~fusion_datasets.export.base.sample_key`): the clip's own file,
whose range a segment's cut and supervision take (no audio is copied); embedded audio is written to
``audio/<key>.flac`` first. The supervision's text is the caption; its ``custom`` holds the clip's id, tags and
QA pairs. Each part's manifests are gzip members that the joined files concatenate (a valid gzip file).

Example:
    >>> from lhotse import CutSet
    >>> from fusion_datasets.export import export
    >>> export("out", "lhotse", "manifests").written
    {'clips': 4}
    >>> CutSet.from_file("manifests/cuts.jsonl.gz")[0].supervisions[0].text
    'A dog barks twice while one car passes by on the wet road.'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_datasets.clip_audio import local_file
from fusion_datasets.export.base import ClipFiles, Exporter, Part, PartResult, sample_key
from fusion_datasets.runtime import require

MANIFESTS = ("recordings", "supervisions", "cuts")


def _lhotse() -> Any:
    return require("lhotse", "export")


class LhotseExporter(Exporter):
    format = "lhotse"
    joined = {f"{name}.jsonl.gz": f".{name}.jsonl.gz" for name in MANIFESTS}

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.clips = ClipFiles(folder, None)
        self.lhotse = _lhotse()

    def _cut(self, row: dict[str, Any], pairs: list[dict[str, str]], result: PartResult) -> Any:
        lhotse = self.lhotse
        own_file = local_file(row.get("audio")) is not None  # a segment of it keeps its range of it
        located = self.clips.source(row, result) if own_file else self.clips.locate(row, result)
        if located is None:
            return None
        file, duration = located
        start = float(row.get("start") or 0.0) if own_file else 0.0
        end = float(row["end"]) if own_file and row.get("end") is not None else duration
        length = end - start
        key = sample_key(row["id"])
        recording = lhotse.Recording.from_file(file, recording_id=key)
        custom = {"clip_id": row["id"], "tags": [tag["label"] for tag in row.get("audio_tags") or []],
                  "qa": [{"question": pair["question"], "answer": pair["answer"]} for pair in pairs]}
        supervision = lhotse.SupervisionSegment(id=key, recording_id=key, start=start, channel=0, text=row["caption"],
                                                duration=min(length, recording.duration - start), custom=custom)
        cut = lhotse.MonoCut(id=key, start=start, duration=supervision.duration, channel=0, recording=recording,
                             supervisions=[supervision.with_offset(-start)])
        return recording, supervision, cut

    def write_part(self, part: Part, result: PartResult) -> None:
        lhotse, pairs = self.lhotse, part.pairs()
        made = [cut for row in part.rows() if (cut := self._cut(row, pairs.get(row["id"], []), result)) is not None]
        sets = {"recordings": lhotse.RecordingSet.from_recordings([item[0] for item in made]),
                "supervisions": lhotse.SupervisionSet.from_segments([item[1] for item in made]),
                "cuts": lhotse.CutSet.from_cuts([item[2] for item in made])}
        for name, manifest in sets.items():
            target = self.fragment(part.name, f".{name}.jsonl.gz")
            target.parent.mkdir(parents=True, exist_ok=True)
            manifest.to_file(target)
        result.written["clips"] += len(made)
