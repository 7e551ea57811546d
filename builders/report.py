"""The build report: rows written, excluded (leakage guard) and skipped by reason, warnings, facts of the build."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

STATS_FILE = "stats.json"


@dataclass
class BuildReport:
    """What a build wrote, excluded (leakage guard) and skipped, by reason, with where each skip happened.

    ``notes`` are facts of the build that go to ``stats.json`` as they are (``split``, ``clip_list``, ...).
    """

    name: str
    written: int = 0
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
        self.written += other.written
        self.excluded += other.excluded
        seen = {(problem["reason"], problem["where"]) for problem in self.problems}
        again = [problem for problem in other.problems if (problem["reason"], problem["where"]) in seen]
        self.skipped.update(other.skipped - Counter(problem["reason"] for problem in again))
        self.problems += [problem for problem in other.problems if problem not in again]
        self.missing.update(other.missing)
        self.warnings += [message for message in other.warnings if message not in self.warnings]
        self.notes.update(other.notes)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.notes, "written": self.written,
                "excluded_benchmark_clips": self.excluded, "skipped": dict(self.skipped),
                "missing_clips": len(self.missing), "missing_manifest": self.missing_manifest,
                "warnings": self.warnings, "problems": self.problems}

    def skips(self) -> str:
        """The skipped rows by reason in one phrase: ``3 skipped (missing_audio: 2, unknown_label: 1)``."""
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.skipped.items()))
        return f"{sum(self.skipped.values())} skipped" + (f" ({reasons})" if reasons else "")

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
        head = f"{self.name}{split}: {self.written} rows written, {self.skips()}, {self.excluded} excluded"
        lines = [f"{head} as benchmark clips"]
        if self.missing_manifest:
            lines.append(f"  {len(self.missing)} missing clips listed in {self.missing_manifest}")
        if "clip_list" in self.notes:
            pinned = self.notes["clip_list"]
            lines.append(f"  clip list {pinned['file']}: {pinned['found']} of {pinned['listed']} clips found "
                         f"({pinned['not_in_metadata']} not in the metadata)")
        lines += [f"  warning: {message}" for message in self.warnings]
        return "\n".join(lines)
