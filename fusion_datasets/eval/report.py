"""The report every ``eval`` command writes: ``report.json`` and the same table as ``report.md``.

``report.json`` is ``{"model": ..., "results": [{"benchmark", "task", "metric", "value", "n"}, ...]}``
with one row per benchmark, task and metric, and a row of task ``overall`` per benchmark and metric.
A row may carry ``ci95``, ``[low, high]``, a 95% confidence interval of its value, and ``protocol``, the
reference protocol it follows (``zero-shot/mean-over-5-folds``). A row whose value is a count, not a measure,
says what it counts in ``counts`` (``"questions"``: 12 of its ``n`` questions were ``unmappable``); ``report.md``
gives counts a table of their own, with their unit, so no column mixes them with percentages.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fusion_datasets.files import write_text_atomically

logger = logging.getLogger(__name__)

OVERALL = "overall"
_FIELDS = ("benchmark", "task", "metric", "value", "n")


def _checked(row: Mapping[str, Any]) -> dict[str, Any]:
    missing = [field for field in _FIELDS if field not in row]
    if missing:
        raise ValueError(f"report row {dict(row)!r} lacks {', '.join(missing)}")
    value, n = row["value"], row["n"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"report row {dict(row)!r}: value must be a finite number")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"report row {dict(row)!r}: n must be a count (int >= 0)")
    checked = {field: row[field] for field in _FIELDS}
    checked["value"] = float(value)
    if row.get("ci95") is not None:
        checked["ci95"] = [float(bound) for bound in row["ci95"]]
    if row.get("protocol"):
        checked["protocol"] = str(row["protocol"])
    if row.get("counts"):
        checked["counts"] = str(row["counts"])
    return checked


def is_count(row: Mapping[str, Any]) -> bool:
    """Whether ``row``'s value counts items (``row["counts"]`` says which) rather than measuring the model."""
    return bool(row.get("counts"))


def with_overall(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``results`` grouped by benchmark, each followed by its ``overall`` rows.

    A benchmark and metric without an ``overall`` row from the caller get one: the mean of its tasks
    weighted by ``n`` (the tasks split the benchmark's items), or for a count their sum, with ``n`` their sum,
    and their ``protocol`` where they share one. Callers whose tasks do not split the items (retrieval's two
    directions) give their own ``overall`` rows.

    Example:
        >>> rows = [{"benchmark": "b", "task": t, "metric": "accuracy", "value": v, "n": n}
        ...         for t, v, n in [("yes/no", 80.0, 30), ("open", 40.0, 10)]]
        >>> with_overall(rows)[-1]["value"]
        70.0
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        checked = _checked(row)
        groups.setdefault(checked["benchmark"], []).append(checked)
    rows: list[dict[str, Any]] = []
    for benchmark, group in groups.items():
        rows += group
        given = {row["metric"] for row in group if row["task"] == OVERALL}
        for metric in dict.fromkeys(row["metric"] for row in group if row["metric"] not in given):
            tasks = [row for row in group if row["metric"] == metric]
            total = sum(row["n"] for row in tasks)
            weights = [row["n"] for row in tasks] if total else [1] * len(tasks)
            value = sum(weight * row["value"] for weight, row in zip(weights, tasks)) / sum(weights)
            overall = {"benchmark": benchmark, "task": OVERALL, "metric": metric, "value": value, "n": total}
            if is_count(tasks[0]):
                overall.update(value=sum(row["value"] for row in tasks), counts=tasks[0]["counts"])
            protocols = {row.get("protocol") for row in tasks}
            if len(protocols) == 1 and None not in protocols:
                overall["protocol"] = protocols.pop()
            rows.append(overall)
    return rows


def _number(value: float) -> str:
    return f"{value:.2f}"


def paper_table(report: Mapping[str, Any]) -> str:
    """The layout of the paper's tables: one row for the model, a column per benchmark and task.

    Each benchmark shows its headline metric (its first metric that is not a count; of a task given under
    several protocols, the first row); its ``overall`` column is left out when it has a single task. A
    partial benchmark's columns say so.
    """
    rows = [row for row in report["results"] if not is_count(row)]
    headline: dict[str, str] = {}
    for row in rows:
        headline.setdefault(row["benchmark"], row["metric"])
    tasks = {benchmark: {row["task"] for row in rows if row["benchmark"] == benchmark}
             for benchmark in headline}
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if row["metric"] == headline[row["benchmark"]]:
            first.setdefault((row["benchmark"], row["task"]), row)
    shown = [row for row in first.values() if not (row["task"] == OVERALL and len(tasks[row["benchmark"]]) == 2)]
    partial = {name for name, extent in report.get("benchmarks", {}).items() if extent["partial"]}
    header = ["model", *(f"{row['benchmark']}{' (partial)' if row['benchmark'] in partial else ''} {row['task']} "
                         f"({row['metric']})" for row in shown)]
    return "\n".join([
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(shown),
        "| " + " | ".join([f"`{report['model']}`", *(_number(row["value"]) for row in shown)]) + " |",
    ]) + "\n"


def _table(header: Sequence[str], numeric: Sequence[str], lines: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table; the ``numeric`` columns are right-aligned."""
    rule = "|" + "|".join("---:" if name in numeric else "---" for name in header) + "|"
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(cells) + " |" for cells in lines)]


def _results_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The measures: every row that is not a count (with a 95% CI column when any has one, and a protocol
    column when any names one)."""
    with_ci = any("ci95" in row for row in rows)
    with_protocol = any("protocol" in row for row in rows)
    header = ["benchmark", "task", "metric", "value", "n"] + (["95% CI"] if with_ci else [])
    header += ["protocol"] if with_protocol else []
    lines = []
    for row in rows:
        cells = [str(row["benchmark"]), str(row["task"]), str(row["metric"]), _number(row["value"]), str(row["n"])]
        if with_ci:
            cells.append(f"[{_number(row['ci95'][0])}, {_number(row['ci95'][1])}]" if "ci95" in row else "")
        if with_protocol:
            cells.append(f"`{row['protocol']}`" if "protocol" in row else "")
        lines.append(cells)
    return _table(header, ("value", "n"), lines)


def _counts_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The counts, each with its unit and what it is out of: ``12 questions`` of ``400 questions``."""
    with_protocol = any("protocol" in row for row in rows)
    header = ["benchmark", "task", "counted", "number", "out of"] + (["protocol"] if with_protocol else [])
    lines = [[str(row["benchmark"]), str(row["task"]), str(row["metric"]), _quantity(row["value"], row["counts"]),
              _quantity(row["n"], row["counts"]), *([f"`{row['protocol']}`" if "protocol" in row else ""]
                                                    if with_protocol else [])]
             for row in rows]
    return _table(header, ("number", "out of"), lines)


def _quantity(count: float, unit: str) -> str:
    """``count`` with its ``unit`` (a plural noun).

    Example:
        >>> _quantity(12, "questions"), _quantity(1, "questions")
        ('12 questions', '1 question')
    """
    return f"{count:.0f} {unit.removesuffix('s') if count == 1 else unit}"


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: :func:`paper_table`, every measure, then the counts in a table of their own."""
    rows = report["results"]
    counts = [row for row in rows if is_count(row)]
    lines = [f"# Evaluation of `{report['model']}`", "", *_extent_lines(report), paper_table(report),
             "## All results", "",
             *_results_table([row for row in rows if not is_count(row)])]
    if counts:
        lines += ["", "## Counts", "", *_counts_table(counts)]
    if report.get("left_out"):
        lines += ["", "## Left out", "", *(f"- {entry['metric']}: {entry['reason']}" for entry in report["left_out"])]
    return "\n".join(lines) + "\n"


def benchmark_extent(benchmark: str | Path, scored: int) -> dict[str, Any]:
    """How much of ``benchmark`` a report scored: ``scored`` clips (the gallery) beside ``size``, the clips its
    metadata names (its build's ``stats.json``; ``None`` for a benchmark without one, a Hub id), and
    ``partial`` when fewer were scored. A partial benchmark is logged as a warning.

    Example:
        >>> Path("clotho-eval").mkdir()
        >>> _ = Path("clotho-eval/stats.json").write_text('{"benchmark_clips": 1045}')
        >>> benchmark_extent("clotho-eval", 20)
        {'scored': 20, 'size': 1045, 'partial': True}
    """
    stats = Path(benchmark) / "stats.json"
    size = json.loads(stats.read_text(encoding="utf-8")).get("benchmark_clips") if stats.is_file() else None
    partial = size is not None and scored < size
    if partial:
        logger.warning("%s: %d of its %d clips scored: the figures are a partial benchmark's, not comparable "
                       "with the full benchmark's", benchmark, scored, size)
    return {"scored": scored, "size": size, "partial": partial}


def _extent_lines(report: Mapping[str, Any]) -> list[str]:
    """report.md's lines on each benchmark's extent (a partial one in bold) and on the settings."""
    lines = []
    for name, extent in report.get("benchmarks", {}).items():
        size = "its size is not known (no build stats)" if extent["size"] is None else f"of its {extent['size']}"
        line = f"{name}: {extent['scored']} clips scored, {size}"
        lines.append(f"- **Partial benchmark** {line}: not comparable with the full benchmark's figures"
                     if extent["partial"] else f"- {line}")
    if report.get("settings"):
        lines.append("- Settings: " + ", ".join(f"{key} `{value}`" for key, value in report["settings"].items()))
    return [*lines, ""] if lines else []


def write_report(path_dir: str | Path, model: str, results: Iterable[Mapping[str, Any]],
                 left_out: Mapping[str, str] | None = None, *, settings: Mapping[str, Any] | None = None,
                 extents: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``report.json`` and ``report.md`` into ``path_dir``; returns the report.

    ``left_out``: the metrics that could not be computed, each with its reason (the report's ``left_out``
    list and a section of ``report.md``), so that none is mistaken for a figure. ``settings``: everything
    that changes a figure (text encoder, template, judge, seed, protocol options). ``extents``: each
    benchmark's :func:`benchmark_extent`.

    Example:
        >>> rows = [{"benchmark": "esc50", "task": "zero-shot", "metric": "accuracy", "value": 80.0, "n": 400}]
        >>> report = write_report("reports/esc50", "my-model", rows)
        >>> sorted(path.name for path in Path("reports/esc50").iterdir()), report["results"][-1]["task"]
        (['report.json', 'report.md'], 'overall')
    """
    report: dict[str, Any] = {"model": str(model), "results": with_overall(results)}
    if settings:
        report["settings"] = dict(settings)
    if extents:
        report["benchmarks"] = {name: dict(extent) for name, extent in extents.items()}
    if left_out:
        report["left_out"] = [{"metric": metric, "reason": reason} for metric, reason in left_out.items()]
    folder = Path(path_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / "report.json", json.dumps(report, indent=2) + "\n")
    write_text_atomically(folder / "report.md", report_markdown(report))
    return report


def model_index(report: Mapping[str, Any], task_type: str,
                skip_metrics: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The report's measures as ``model-index`` entries for a model card (metric names say the task); counts
    and ``skip_metrics`` are left out.

    Example:
        >>> rows = [{"benchmark": "esc50", "task": "zero-shot", "metric": metric, "value": value, "n": 400}
        ...         for metric, value in [("accuracy", 80.0), ("coverage", 99.5)]]
        >>> entry = model_index({"model": "my-model", "results": rows}, "audio-classification", ["coverage"])[0]
        >>> entry["results"][0]["metrics"]
        [{'type': 'accuracy', 'value': 80.0, 'name': 'accuracy (zero-shot)'}]
    """
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index

    skipped = set(skip_metrics)
    results = [
        EvalResult(task_type=task_type, dataset_type=row["benchmark"], dataset_name=row["benchmark"],
                   metric_type=row["metric"], metric_value=round(row["value"], 4),
                   metric_name=f"{row['metric']} ({row['task']})")
        for row in report["results"] if row["metric"] not in skipped and not is_count(row)
    ]
    return eval_results_to_model_index(str(report["model"]), results)


def write_model_index(path: str | Path, report: Mapping[str, Any], task_type: str,
                      skip_metrics: Iterable[str] = ()) -> Path:
    """Write :func:`model_index` as YAML (``model-index: [...]``) to paste into a model card's metadata."""
    import yaml

    entries = model_index(report, task_type, skip_metrics)
    return write_text_atomically(Path(path), yaml.safe_dump({"model-index": entries}, sort_keys=False,
                                                            allow_unicode=True))
