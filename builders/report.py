"""The build report: rows written, metadata read, excluded (leakage guard) and skipped by reason, warnings, facts.

Each count has its unit: rows written are clips, questions, captions or QA pairs; metadata is read in CSV
lines or JSON objects, and a skipped row is one of those (an AudioCaps clip has five caption lines).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

STATS_FILE = "stats.json"


def amount(count: int, unit: str) -> str:
    """``count`` in ``unit``, a plural that ends in s: ``1 clip``, ``3 clips``."""
    return f"{count} {unit.removesuffix('s') if count == 1 else unit}"


def _amounts(counts: Counter) -> str:
    return " and ".join(amount(count, unit) for unit, count in counts.items())


@dataclass
class BuildReport:
    """What a build wrote, read, excluded (leakage guard) and skipped, by reason, with where each skip happened.

    ``written`` counts rows by unit (``clips``, ``questions``; a unit the build writes is there from 0),
    ``read`` the metadata by unit (``metadata lines``, ``JSON objects``), ``excluded`` clips.
    ``notes`` are facts of the build that go to ``stats.json`` as they are (``split``, ``clip_list``, ...).
    """

    name: str
    written: Counter = field(default_factory=Counter)
    read: Counter = field(default_factory=Counter)
    excluded: int = 0
    skipped: Counter = field(default_factory=Counter)
    problems: list[dict[str, str]] = field(default_factory=list)
    missing: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    missing_manifest: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

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

    def warn(self, message: str) -> None:
        """A warning about the whole build (an encoding, a split, classes without clips), logged once."""
        if message not in self.warnings:
            self.warnings.append(message)
            logger.warning("%s: %s", self.name, message)

    def merge(self, other: BuildReport) -> None:
        """Add ``other`` (another config's pass over the same files: a row met twice counts once)."""
        self.written.update(other.written)
        self.read |= other.read  # each config's pass reads the same metadata
        self.excluded += other.excluded
        seen = {(problem["reason"], problem["where"]) for problem in self.problems}
        again = [problem for problem in other.problems if (problem["reason"], problem["where"]) in seen]
        self.skipped.update(other.skipped - Counter(problem["reason"] for problem in again))
        self.problems += [problem for problem in other.problems if problem not in again]
        self.missing.update(other.missing)
        self.warnings += [message for message in other.warnings if message not in self.warnings]
        self.notes.update(other.notes)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.notes, "written": self.written.total(),
                "written_by_unit": dict(self.written), "read": dict(self.read),
                "excluded_benchmark_clips": self.excluded, "skipped": dict(self.skipped),
                "missing_clips": len(self.missing), "missing_manifest": self.missing_manifest,
                "warnings": self.warnings, "problems": self.problems}

    def skips(self) -> str:
        """The skipped rows by reason, most first: ``3 skipped (missing_audio: 2, unknown_label: 1)``."""
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.skipped.most_common())
        return f"{self.skipped.total()} skipped" + (f" ({reasons})" if reasons else "")

    def counts(self) -> str:
        """Written and read, each in its unit: ``3 clips written; 5 metadata lines read, 2 skipped (...)``."""
        parts = [f"{_amounts(self.written) or '0 rows'} written"]
        if self.read:
            parts.append(f"{_amounts(self.read)} read, {self.skips()}")
        elif self.skipped:
            parts.append(self.skips())
        if self.excluded:
            parts.append(f"{amount(self.excluded, 'clips')} left out by the leakage guard")
        return "; ".join(parts)

    def first_problem(self) -> str | None:
        """Where the first skipped row is and why, for a message that must say what to fix."""
        first = next(iter(self.missing.values()), None)
        if first:
            return f"{first['where']}: audio {first['reference']!r} not found"
        problem = next(iter(self.problems), None)
        return problem and f"{problem['where']}: {problem['reason']} {problem['detail']}".strip()

    def summary(self) -> str:
        """The report in a few lines, for the command line."""
        split = f" ({', '.join(self.notes['splits'])})" if self.notes.get("splits") else ""
        lines = [f"{self.name}{split}: {self.counts()}"]
        if "clip_list" in self.notes:
            pinned = self.notes["clip_list"]
            lines.append(f"  clip list {pinned['file']}: {pinned['found']} of {pinned['listed']} clips found "
                         f"({pinned['not_in_metadata']} not in the metadata)")
        lines += [f"  warning: {message}" for message in self.warnings]
        return "\n".join(lines)
