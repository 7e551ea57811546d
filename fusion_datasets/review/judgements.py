"""A reviewer's judgements of captions, saved as they are made in the file ``calibrate-filter`` reads.

One JSON Lines file per reviewer, ``<output>/review/<reviewer>.jsonl``: a row per judged clip with ``id``,
``audio`` (the clip's path, so calibration finds it without ``--audio-root``), ``caption``, ``label``
(``good``/``bad``), ``note``, ``clap_score`` and ``reviewer``. Each judgement rewrites the file atomically,
so a closed tab or a killed server loses nothing; a clip judged again keeps its place with the new label.

Example:
    >>> from fusion_datasets.review.clips import load_candidates, read_clips
    >>> clip = read_clips(Path("out"), load_candidates(Path("out"))[:1])[0]  # "out": a run's output folder
    >>> store = JudgementStore(Path("out/review/alice.jsonl"))
    >>> _ = store.record(clip, "good", note="")
    >>> store.labels() == {clip.id: {"label": "good", "note": ""}}
    True
"""

from __future__ import annotations

import fcntl
import json
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from fusion_datasets.errors import UserError
from fusion_datasets.files import write_text_atomically
from fusion_datasets.review.clips import ReviewClip

REVIEW_FOLDER = "review"  # under the output folder: judgements, and calibrate-filter's output
CALIBRATION_FOLDER = f"{REVIEW_FOLDER}/calibration"
LABELS = ("good", "bad")
_REVIEWER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_NOTE = 2000


def judgements_path(root: Path, reviewer: str) -> Path:
    """Where ``reviewer``'s judgements of the output at ``root`` are kept; the name is letters, digits, ``_.-``."""
    if not _REVIEWER.match(reviewer) or ".." in reviewer:
        raise UserError(f"--reviewer {reviewer!r}: use letters, digits, '_', '.' or '-' (at most 64, no '..'), "
                        "e.g. --reviewer alice")
    return root / REVIEW_FOLDER / f"{reviewer}.jsonl"


@dataclass(frozen=True)
class Judgement:
    """One row of the judgements file."""

    id: str
    audio: str | None
    caption: str
    label: str
    note: str
    clap_score: float | None
    reviewer: str


def hold_judgements(root: Path, reviewer: str) -> IO[str]:
    """An exclusive lock on ``reviewer``'s judgements of the output at ``root``, held while the file stays open.

    Two servers for one reviewer would each save their own judgements over the other's; the second is
    refused. The lock goes when the holder closes it or dies (a killed server leaves nothing to clear).
    """
    path = root / ".cache" / f"review-{reviewer}.lock"  # .cache/ is never uploaded (see hub.push.IGNORED)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"another `fusion-datasets review` of this output is open for reviewer {reviewer!r}: "
                        "use its page, stop it, or give another --reviewer") from None
    return handle


class JudgementStore:
    """A reviewer's judgements keyed by clip id, loaded from and saved to one JSON Lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reviewer = path.stem
        self._lock = threading.Lock()
        self._rows: dict[str, Judgement] = {}
        if path.is_file():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        row = Judgement(**json.loads(line))
                    except (ValueError, TypeError) as error:
                        raise UserError(f"{path}, line {number}: not a judgement ({error}); move the file "
                                        "away or fix the line") from None
                    self._rows[row.id] = row

    def labels(self) -> dict[str, dict[str, str]]:
        """``{clip id: {"label", "note"}}`` of what is judged."""
        return {key: {"label": row.label, "note": row.note} for key, row in self._rows.items()}

    def record(self, clip: ReviewClip, label: str, note: str = "") -> Judgement:
        """Judge ``clip`` good or bad (replacing an earlier judgement of it) and save the file at once."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        judgement = Judgement(id=clip.id, audio=clip.audio_reference, caption=clip.caption, label=label,
                              note=note[:MAX_NOTE], clap_score=clip.clap_score, reviewer=self.reviewer)
        with self._lock:
            self._rows[clip.id] = judgement
            text = "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in self._rows.values())
            write_text_atomically(self.path, text)
        return judgement

    def summary(self, clips: list[ReviewClip], threshold: float | None) -> dict[str, Any]:
        """Counts over the sampled ``clips``, and how often the filter at ``threshold`` agrees with the reviewer.

        Agreement is the share of judged, scored captions where "good" and "kept (score >= threshold)" agree.
        """
        judged = [(clip, self._rows[clip.id]) for clip in clips if clip.id in self._rows]
        good = sum(row.label == "good" for _, row in judged)
        scored = [(clip.clap_score >= threshold, row.label == "good") for clip, row in judged
                  if clip.clap_score is not None and threshold is not None]
        agree = sum(kept == is_good for kept, is_good in scored)
        return {"sampled": len(clips), "judged": len(judged), "good": good, "bad": len(judged) - good,
                "threshold": threshold, "scored": len(scored),
                "agreement": agree / len(scored) if scored else None}
