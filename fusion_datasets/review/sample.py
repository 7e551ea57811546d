"""Which captions a reviewer sees: a sample stratified over CLAP scores, the same for the same seed.

The captions the filter kept and those it removed are sampled as two groups, each in proportion to its
size but at least a quarter of the sample (as far as it has captions), so both sides of the threshold are
judged. Within a group the captions are sorted by score and cut into as many equal runs as the group
gets picks; one caption is drawn from each run, so the whole range of scores is covered. Captions without
a score come last, only where the scored ones do not fill the sample. The picks are shown in a shuffled
order, so the scores do not rise down the page.

Example:
    >>> stratified_sample([0.1, 0.5, -0.2, 0.3, None], [True, True, False, True, None], size=3, seed=0)
    [1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _quotas(sizes: Sequence[int], total: int) -> list[int]:
    """Picks per group: a quarter of ``total`` each at least (as far as a group has items), the rest in
    proportion to the groups' sizes."""
    quotas = [min(size, max(1, total // 4)) for size in sizes]
    while sum(quotas) < total and any(quota < size for quota, size in zip(quotas, sizes)):
        # the group furthest below its proportional share gets the next pick
        open_groups = [i for i, (quota, size) in enumerate(zip(quotas, sizes)) if quota < size]
        quotas[min(open_groups, key=lambda i: (quotas[i] / sizes[i], i))] += 1
    return quotas


def _spread(indices: list[int], scores: Sequence[float], picks: int, rng: np.random.Generator) -> list[int]:
    """``picks`` of ``indices``: one drawn from each of ``picks`` equal runs of them sorted by score."""
    if picks == 0:
        return []
    ordered = sorted(indices, key=lambda i: (scores[i], i))
    return [int(rng.choice(run)) for run in np.array_split(np.array(ordered), picks)]


def stratified_sample(
    scores: Sequence[float | None], kept: Sequence[bool | None], size: int, seed: int = 0
) -> list[int]:
    """Positions of ``size`` captions (all of them if fewer) stratified over ``scores``, shuffled by ``seed``."""
    if size < 1:
        raise ValueError(f"the sample size must be at least 1, got {size}")
    rng = np.random.default_rng(seed)
    scored = [i for i, score in enumerate(scores) if score is not None and not np.isnan(score)]
    groups = [[i for i in scored if not kept[i]], [i for i in scored if kept[i]]]
    total = min(size, len(scores))
    quotas = _quotas([len(group) for group in groups], min(total, len(scored)))
    picks = [pick for group, quota in zip(groups, quotas) for pick in _spread(group, scores, quota, rng)]
    unscored = sorted(set(range(len(scores))) - set(scored))
    if len(picks) < total:
        picks += [int(i) for i in rng.choice(unscored, total - len(picks), replace=False)]
    return [picks[i] for i in rng.permutation(len(picks))]
