"""The review's sample: both sides of the threshold, the whole range of scores, the same for the same seed."""

import numpy as np
import pytest

from fusion_datasets.review.sample import stratified_sample


def _scores(n: int = 1000, seed: int = 0) -> tuple[list[float], list[bool]]:
    scores = np.random.default_rng(seed).normal(0.2, 0.1, n).tolist()
    return scores, [score >= 0.08 for score in scores]


def test_the_same_seed_gives_the_same_sample_and_another_seed_another():
    scores, kept = _scores()
    first = stratified_sample(scores, kept, 50, seed=3)
    assert first == stratified_sample(scores, kept, 50, seed=3)
    assert first != stratified_sample(scores, kept, 50, seed=4)
    assert len(set(first)) == 50


def test_both_sides_of_the_threshold_are_sampled_even_when_one_side_is_rare():
    scores, kept = _scores()
    removed = [i for i, keep in enumerate(kept) if not keep]
    assert len(removed) < 150  # about 12% of the captions are under the threshold
    picks = stratified_sample(scores, kept, 40, seed=0)
    assert sum(not kept[i] for i in picks) == 10  # a quarter of the sample, not 12%


def test_the_picks_cover_the_range_of_scores_of_each_side():
    scores, kept = _scores()
    picks = stratified_sample(scores, kept, 40, seed=1)
    kept_scores = sorted(score for score, keep in zip(scores, kept) if keep)
    kept_picks = sorted(scores[i] for i in picks if kept[i])
    # one pick from each of 30 equal runs of the sorted scores: the lowest and highest runs are both hit
    run = len(kept_scores) // 30
    assert kept_picks[0] <= kept_scores[run] and kept_picks[-1] >= kept_scores[-run]


def test_unscored_captions_fill_in_only_when_the_scored_ones_run_out():
    scores = [0.3, None, 0.1, None, 0.5]
    kept = [True, None, False, None, True]
    assert sorted(stratified_sample(scores, kept, 3, seed=0)) == [0, 2, 4]
    assert sorted(stratified_sample(scores, kept, 10, seed=0)) == [0, 1, 2, 3, 4]


def test_a_sample_needs_at_least_one_caption():
    with pytest.raises(ValueError, match="at least 1"):
        stratified_sample([0.1], [True], 0)


def test_a_review_of_two_captions_hears_both_sides_of_the_runs_threshold(review_output):
    from fusion_datasets.review import open_review

    # the run's threshold keeps 1 of its 3 captions: a plain random pair would often miss the kept one
    for seed in range(6):
        clips = open_review(review_output, sample=2, seed=seed).clips
        assert sorted(clip.clap_keep for clip in clips) == [False, True], seed
    assert [c.id for c in open_review(review_output, sample=2, seed=5).clips] == \
        [c.id for c in open_review(review_output, sample=2, seed=5).clips]
