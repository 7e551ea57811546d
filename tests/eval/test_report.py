import json

import pytest

from fusion_datasets.eval.report import report_markdown, with_overall, write_report


def _row(task: str, metric: str, value: float, n: int, benchmark: str = "clotho-aqa", **extra) -> dict:
    return {"benchmark": benchmark, "task": task, "metric": metric, "value": value, "n": n, **extra}


def test_overall_is_the_n_weighted_mean_per_benchmark_and_metric():
    rows = with_overall(
        [
            _row("yes/no", "accuracy", 80.0, 30),
            _row("one-word", "accuracy", 40.0, 10),
            _row("x", "accuracy", 50, 5, "other"),
        ]
    )
    overall = {(row["benchmark"], row["metric"]): row for row in rows if row["task"] == "overall"}
    assert overall["clotho-aqa", "accuracy"]["value"] == 70.0 and overall["clotho-aqa", "accuracy"]["n"] == 40
    assert overall["other", "accuracy"]["value"] == 50.0
    assert [row["benchmark"] for row in rows] == ["clotho-aqa"] * 3 + ["other"] * 2


def test_an_overall_row_from_the_caller_is_kept():
    rows = with_overall(
        [_row("t2a", "R@1", 40.0, 50), _row("a2t", "R@1", 60.0, 10), _row("overall", "R@1", 50.0, 10)]
    )
    assert [row["task"] for row in rows] == ["t2a", "a2t", "overall"] and rows[-1]["value"] == 50.0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"benchmark": "b", "task": "t", "metric": "m", "value": 1.0}, "lacks n"),
        (_row("t", "m", float("nan"), 3), "finite number"),
        (_row("t", "m", 1.0, -1), "n must be a count"),
    ],
)
def test_bad_rows_are_refused(row, message):
    with pytest.raises(ValueError, match=message):
        with_overall([row])


def test_write_report_json_and_markdown(tmp_path):
    report = write_report(
        tmp_path / "out", "my/model", [_row("yes/no", "accuracy", 81.234, 30, ci95=(78.0, 84.5))]
    )
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    assert report["results"][0] == _row("yes/no", "accuracy", 81.234, 30, ci95=[78.0, 84.5])
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown == report_markdown(report)
    assert "| clotho-aqa | yes/no | accuracy | 81.23 | 30 | [78.00, 84.50] |" in markdown
    assert "| clotho-aqa | overall | accuracy | 81.23 | 30 |  |" in markdown


def test_an_overall_row_names_the_protocol_its_tasks_share(tmp_path):
    grouped = "clotho-aqa/grouped"
    report = write_report(tmp_path, "m", [
        _row("yes/no", "accuracy", 80.0, 30, protocol=grouped),
        _row("single-word", "accuracy", 40.0, 10, protocol=grouped),
        _row("yes/no", "judge_score", 50.0, 30, protocol="a"),
        _row("single-word", "judge_score", 70.0, 10, protocol="b"),
    ])
    overall = {row["metric"]: row for row in report["results"] if row["task"] == "overall"}
    assert overall["accuracy"]["protocol"] == grouped and "protocol" not in overall["judge_score"]
    assert f"| clotho-aqa | overall | accuracy | 70.00 | 40 | `{grouped}` |" in (tmp_path / "report.md").read_text()


def test_counts_get_a_table_of_their_own_with_their_unit(tmp_path):
    report = write_report(tmp_path, "m", [
        _row("Sound_AQA", "accuracy", 50.0, 4, "air-bench-foundation"),
        _row("Music_QA", "accuracy", 25.0, 4, "air-bench-foundation"),
        _row("Sound_AQA", "unmappable", 2, 4, "air-bench-foundation", counts="questions"),
        _row("Music_QA", "unmappable", 10, 396, "air-bench-foundation", counts="questions"),
    ])
    overall = {row["metric"]: row for row in report["results"] if row["task"] == "overall"}
    assert overall["unmappable"]["value"] == 12 and overall["unmappable"]["n"] == 400  # a count adds up
    assert overall["unmappable"]["counts"] == "questions" and overall["accuracy"]["value"] == 37.5
    markdown = (tmp_path / "report.md").read_text()
    head, results, counts = markdown.split("## ")[0], *markdown.split("## ")[1:]
    assert "unmappable" not in head and "unmappable" not in results and "12.00" not in markdown
    assert results.startswith("All results") and counts.startswith("Counts")
    assert "| benchmark | task | counted | number | out of |\n|---|---|---|---:|---:|" in counts
    assert "| air-bench-foundation | overall | unmappable | 12 questions | 400 questions |" in counts
    assert "| air-bench-foundation | overall | accuracy | 37.50 | 8 |" in results


def test_a_report_without_counts_has_no_counts_table(tmp_path):
    write_report(tmp_path, "m", [_row("t2a", "R@1", 40.0, 50, "clotho")])
    assert "## Counts" not in (tmp_path / "report.md").read_text()
