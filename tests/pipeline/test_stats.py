"""``stats.json``'s CLAP histogram says what each count covers: its bin edges beside its counts. The counts of a
step's columns come from the step (here the CLAP filter), so a plan without it has none."""

import datasets
import numpy as np

from fusion_datasets.clap.filter import ClapSimilarityFilter
from fusion_datasets.pipeline.outputs import data_counts
from fusion_datasets.pipeline.plan import Plan
from fusion_datasets.pipeline.state import Part
from fusion_datasets.pipeline.stats import summarize

FILTER = Plan((ClapSimilarityFilter(),))


def _part(name: str, scores: list[float | None]) -> Part:
    ids = [f"{name}-{index}" for index in range(len(scores))]
    cues = datasets.Dataset.from_dict({
        "id": ids, "errors": [[] for _ in ids], "caption": ["a dog barks"] * len(ids), "clap_score": scores,
        "clap_keep": [score is not None and score >= 0.08 for score in scores],
    })
    return Part(f"part-{name}-0000", ids, {}, data_counts(FILTER.steps, cues, None, None))


def test_the_histogram_edges_say_which_bin_each_score_was_counted_in():
    scores = [-0.12, 0.1, 0.0999, 0.33, 1.0, -1.0]
    stats = summarize([_part("a", scores[:3]), _part("b", [*scores[3:], None])], [], FILTER)
    edges, counts = stats["clap_histogram_edges"], stats["clap_histogram"]
    assert len(edges) == len(counts) + 1 and edges[0] == -1.0 and edges[-1] == 1.0
    assert np.allclose(np.diff(edges), 0.05)
    expected = [0] * len(counts)
    for score in scores:  # bin i holds edges[i] <= score < edges[i + 1]; the last bin holds 1.0 as well
        expected[min(int(np.searchsorted(edges, score, side="right")) - 1, len(counts) - 1)] += 1
    assert counts == expected and sum(counts) == stats["clap_scored"] == 6
    assert counts[edges.index(0.1)] == counts[edges.index(0.05)] == 1  # 0.1 and 0.0999: either side of 0.1
    assert stats["removed_by_filter"] == 2 and stats["filter_removal_rate"] == round(2 / 6, 4)


def test_a_plan_without_the_filter_has_no_histogram():
    cues = datasets.Dataset.from_dict({"id": ["x"], "errors": [[]], "clap_score": [0.5], "clap_keep": [True]})
    stats = summarize([Part("part-x-0000", ["x"], {}, data_counts((), cues, None, None))], ["x"], Plan(()))
    assert "clap_histogram" not in stats and "clap_histogram_edges" not in stats and stats["clips"] == 1
