"""``stats.json``'s CLAP histogram says what each count covers: its bin edges beside its counts."""

import datasets
import numpy as np

from fusion_datasets.pipeline.outputs import data_counts
from fusion_datasets.pipeline.state import Part
from fusion_datasets.pipeline.stats import summarize


def _part(name: str, scores: list[float | None]) -> Part:
    ids = [f"{name}-{index}" for index in range(len(scores))]
    cues = datasets.Dataset.from_dict({
        "id": ids, "errors": [[] for _ in ids], "caption": ["a dog barks"] * len(ids), "clap_score": scores,
        "clap_keep": [score is not None and score >= 0.08 for score in scores],
    })
    return Part(f"part-{name}-0000", ids, {}, data_counts(cues, None, None))


def test_the_histogram_edges_say_which_bin_each_score_was_counted_in():
    scores = [-0.12, 0.1, 0.0999, 0.33, 1.0, -1.0]
    stats = summarize([_part("a", scores[:3]), _part("b", [*scores[3:], None])], [], {})
    edges, counts = stats["clap_histogram_edges"], stats["clap_histogram"]
    assert len(edges) == len(counts) + 1 and edges[0] == -1.0 and edges[-1] == 1.0
    assert np.allclose(np.diff(edges), 0.05)
    expected = [0] * len(counts)
    for score in scores:  # bin i holds edges[i] <= score < edges[i + 1]; the last bin holds 1.0 as well
        expected[min(int(np.searchsorted(edges, score, side="right")) - 1, len(counts) - 1)] += 1
    assert counts == expected and sum(counts) == stats["clap_scored"] == 6
    assert counts[edges.index(0.1)] == counts[edges.index(0.05)] == 1  # 0.1 and 0.0999: either side of 0.1


def test_no_clap_scores_no_histogram():
    cues = datasets.Dataset.from_dict({"id": ["x"], "errors": [[]]})
    stats = summarize([Part("part-x-0000", ["x"], {}, data_counts(cues, None, None))], ["x"], {})
    assert "clap_histogram" not in stats and "clap_histogram_edges" not in stats
