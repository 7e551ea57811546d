"""``stats.json``: the counts of an output's data and the counters of the work that made it.

Data counts (clips, errors by stage, captions, QA pairs, and what each step counts of its own columns, such as
the CLAP score histogram) are those of each part's data, added up over the parts; each step of the plan then
adds what it says of its totals (the CLAP filter: the histogram's bin edges, whose 40 counts cover the cosine
range [-1, 1] in steps of 0.05, and its removal rate). Work counters are what each stage reported while it ran
(rows, rows with its errors, seconds, tokens, retries, re-asks, filter removals): a part keeps the sum over
every run that touched it, so a ``--retry-errors`` run adds its seconds to the first run's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fusion_datasets.llm.step import USAGE_FIELDS
from fusion_datasets.pipeline.plan import Plan


def add_up(total: Any, value: Any) -> Any:
    """``total + value`` for counters: numbers add, lists add per bin (histograms), mappings add per key.

    Example:
        >>> add_up({"a": 1, "h": [1, 0]}, {"a": 2, "b": {"c": 1}, "h": [0, 3]})
        {'a': 3, 'h': [1, 3], 'b': {'c': 1}}
    """
    if isinstance(value, Mapping):
        total = dict(total or {})
        return {**total, **{key: add_up(total.get(key), item) for key, item in value.items()}}
    if isinstance(value, list):
        return [a + b for a, b in zip(total or [0] * len(value), value)]
    return value if total is None else total + value


def failed_stages(counters: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The stages that failed on every row they were given (a run of them exits non-zero)."""
    return [stage for stage, counts in counters.items() if counts.get("rows") and counts["errors"] >= counts["rows"]]


def summarize(parts: Sequence[Any], input_ids: Iterable[str], plan: Plan, input_unreadable: int = 0
              ) -> dict[str, Any]:
    """``stats.json`` of the committed ``parts`` against the input's ids and the current ``plan`` (and what of the
    input could not be read)."""
    fingerprints = plan.fingerprints()
    total: dict[str, Any] = {"parts": len(parts)}
    stages: dict[str, Any] = {}
    for part in parts:
        total = add_up(total, part.counts)
        stages = add_up(stages, part.work)
    total.setdefault("errors_by_stage", {})
    wanted = set(input_ids)
    done = {clip for part in parts for clip in part.ids}
    outdated = [part.name for part in parts if part.plan != fingerprints]
    total["clips_to_do"] = len(wanted - done)
    total["clips_not_in_input"] = len(done - wanted)
    total["input_unreadable"] = input_unreadable
    total["parts_with_another_plan"] = len(outdated)
    total["complete"] = not (wanted - done) and not outdated
    total["stages"] = {stage: {name: round(value, 3) if isinstance(value, float) else value
                               for name, value in counts.items()} for stage, counts in stages.items()}
    total["seconds_by_stage"] = {stage: counts["seconds"] for stage, counts in total["stages"].items()
                                 if "seconds" in counts}
    total["llm_usage"] = {stage: {name: counts[name] for name in USAGE_FIELDS}
                          for stage, counts in total["stages"].items() if all(name in counts for name in USAGE_FIELDS)}
    for step in plan.steps:
        total.update(step.summary(total))
    return total
