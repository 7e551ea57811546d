import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from fusion_datasets.builders.retrieval import RETRIEVAL_FEATURES
from fusion_datasets.clap.embed import load_clap
from fusion_datasets.eval import (
    RETRIEVAL_KEYS,
    evaluate_retrieval,
    retrieval,
    retrieval_confidence_intervals,
    retrieval_metrics,
    retrieval_ranks,
    retrieval_report_rows,
    run_retrieval_eval,
)
from fusion_datasets.eval.retrieval import position_ranks, summarize_ranks
from fusion_datasets.evaluate_modules import module_path
from fusion_datasets.media import MediaBatch


def _reference(text: np.ndarray, audio: np.ndarray, links: np.ndarray, map_protocol: str = "sorted") -> dict:
    """A plain, loop-per-query version of the rule: ties count against the model, an audio's tied captions
    rank in caption order, A2T AP@10 over its caption ranks sorted or in caption order."""
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    audio = audio / np.linalg.norm(audio, axis=1, keepdims=True)
    sims = text @ audio.T
    t2a = np.array([np.sum(sims[i] >= sims[i, links[i]]) for i in range(len(text))])
    a2t, ap = [], []
    for a in sorted(set(links.tolist())):
        own, others = sims[links == a, a], sims[links != a, a]
        ranks = [1 + np.sum(others >= s) + np.sum(own > s) + np.sum(own[:j] == s) for j, s in enumerate(own)]
        hits = [r for r in (sorted(ranks) if map_protocol == "sorted" else ranks) if r <= 10]
        a2t.append(min(ranks))
        ap.append(sum((i + 1) / r for i, r in enumerate(hits)) / len(own))
    out = {}
    for name, ranks, precision in (
        ("t2a", t2a, np.where(t2a <= 10, 1 / t2a, 0)),
        ("a2t", np.array(a2t), np.array(ap)),
    ):
        out |= {f"{name}_R@{k}": 100 * np.mean(ranks <= k) for k in (1, 5, 10)}
        out |= {f"{name}_mAP@10": 100 * np.mean(precision), f"{name}_mean_rank": np.mean(ranks)}
        out[f"{name}_median_rank"] = np.floor(np.median(ranks))
    return out


# An AudioCaps-like benchmark: 5 captions per clip, caption strings shared by several clips, and two clips
# (A and B) with the same audio; clip D's captions were all blank: a T2A distractor, not an A2T query.
# Each caption string's cosine with A's (and B's) audio and with C's; D's audio scores 0 with every caption.
COSINES = {
    "Music is playing": (0.9, 0.1),
    "A song plays with drums": (0.7, 0.3),
    "Music plays while a man talks": (0.5, 0.6),
    "People are talking": (0.3, 0.8),
    "A man speaks": (0.2, 0.9),
    "A woman speaks": (0.1, 0.7),
    "Wind blows": (0.05, 0.2),
}
CAPTIONS = {
    "A": ["A song plays with drums", "Wind blows", "Music is playing", "Music plays while a man talks", "A man speaks"],
    "B": ["Music is playing", "A song plays with drums", "A woman speaks", "People are talking", "Wind blows"],
    "C": ["Music plays while a man talks", "People are talking", "A woman speaks", "A man speaks", "Wind blows"],
    "D": [],
}
AUDIO_OF = {"A": "music", "B": "music", "C": "speech", "D": "noise"}  # the eval clip each clip's file holds
# Hand-computed from the rule. T2A: a caption's rank counts every audio scoring at least its own, so
# B (A's copy) ranks before A for A's captions and A before B for B's; C's captions all rank C first.
T2A_RANKS = [2, 3, 2, 3, 3] + [2, 2, 3, 3, 3] + [1, 1, 1, 1, 1]
# A2T: each caption's rank, in caption order; another clip's copy of a caption string ranks before it.
# A: "Music is playing" (0.9) comes after B's copy: 2; drums (0.7) after B's 0.9 and 0.7: 4; "Music plays
# while a man talks" (0.5) after those and C's copy: 6; "A man speaks" (0.2) after 6 others >= 0.2: 10;
# "Wind blows" (0.05) after all 10 others: 15. B likewise [2, 4, 12, 8, 15]. C scores its captions
# 0.6, 0.8, 0.7, 0.9, 0.2: [8, 4, 6, 2, 13].
A2T_RANKS = [[4, 15, 2, 6, 10], [2, 4, 12, 8, 15], [8, 4, 6, 2, 13]]
# AP@10 sorted: A (1/2 + 2/4 + 3/6 + 4/10) / 5 = 0.38, B (1/2 + 2/4 + 3/8) / 5 = 0.275,
# C (1/2 + 2/4 + 3/6 + 4/8) / 5 = 0.4. Unsorted (LAION-CLAP's code, ranks <= 10 in caption order):
# A (1/4 + 2/2 + 3/6 + 4/10) / 5 = 0.43, B 0.275, C (1/8 + 2/4 + 3/6 + 4/2) / 5 = 0.625.
A2T_MAP = {"sorted": 100 * (0.38 + 0.275 + 0.4) / 3, "unsorted": 100 * (0.43 + 0.275 + 0.625) / 3}
EXPECTED = {
    "t2a_R@1": 100 * 5 / 15, "t2a_R@5": 100.0, "t2a_R@10": 100.0,
    "t2a_mAP@10": 100 * (4 / 2 + 6 / 3 + 5 / 1) / 15,  # 60
    "a2t_R@1": 0.0, "a2t_R@5": 100.0, "a2t_R@10": 100.0, "a2t_mAP@10": A2T_MAP["sorted"],  # 35.17
    "t2a_mean_rank": 31 / 15, "t2a_median_rank": 2.0, "a2t_mean_rank": 2.0, "a2t_median_rank": 2.0,
}
DIM = 5


def _text_vector(caption: str) -> np.ndarray:
    with_audio, with_speech = COSINES[caption]
    return np.array([with_audio, with_speech, np.sqrt(1 - with_audio**2 - with_speech**2), 0.0, 0.0])


AUDIO_VECTORS = {"music": np.eye(DIM)[0], "speech": np.eye(DIM)[1], "noise": np.eye(DIM)[3]}


def _audiocaps_like(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Caption and audio embeddings (float32, like a model's: copies are bit-identical) and the links."""
    strings = list(COSINES)
    text_table = (np.array([_text_vector(caption) for caption in strings]) @ rotation).astype(np.float32)
    audio_table = {name: (vector @ rotation).astype(np.float32) for name, vector in AUDIO_VECTORS.items()}
    clips = list(CAPTIONS)
    text = text_table[[strings.index(caption) for clip in clips for caption in CAPTIONS[clip]]]
    links = np.array([row for row, clip in enumerate(clips) for _ in CAPTIONS[clip]])
    return text, np.array([audio_table[AUDIO_OF[clip]] for clip in clips]), links


def test_one_audio_per_caption_perfect_match():
    embeds = np.eye(4)
    metrics = retrieval_metrics(embeds, embeds, np.arange(4))
    assert list(metrics) == list(RETRIEVAL_KEYS)
    assert all(metrics[key] == 100.0 for key in RETRIEVAL_KEYS if "rank" not in key)
    assert all(metrics[key] == 1.0 for key in RETRIEVAL_KEYS if "rank" in key)


def test_one_audio_per_caption_hand_computed():
    audio = np.eye(3)
    # caption 0 -> audio 0 (rank 1); caption 1 -> audio 1 but closest to audio 2 (rank 2);
    # caption 2 -> audio 2 but closer to audio 0 and audio 1 (rank 3)
    text = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.6, 0.8, 0.0]])
    metrics = retrieval_metrics(text, audio, [0, 1, 2])
    assert metrics["t2a_R@1"] == pytest.approx(100 / 3)
    assert metrics["t2a_mAP@10"] == pytest.approx(100 * (1 + 1 / 2 + 1 / 3) / 3)
    assert (metrics["t2a_mean_rank"], metrics["t2a_median_rank"]) == (2.0, 2.0)
    # A2T: audio 0 finds caption 0 first; audio 1 finds caption 2 (0.8) before its caption 1 (0.6): rank 2;
    # audio 2 scores its caption 2 at 0, behind caption 1 (0.8) and tied with caption 0: rank 3
    assert metrics["a2t_R@1"] == pytest.approx(100 / 3)
    assert metrics["a2t_mAP@10"] == pytest.approx(100 * (1 + 1 / 2 + 1 / 3) / 3)


def test_several_captions_per_audio_and_ties_hand_computed():
    audio = np.eye(3)
    text = np.array(
        [
            [1.0, 0.0, 0.0],  # -> audio 0, rank 1
            [0.6, 0.8, 0.0],  # -> audio 0, audio 1 scores higher: rank 2
            [0.0, 1.0, 0.0],  # -> audio 1, rank 1
            [0.8, 0.6, 0.0],  # -> audio 1, audio 0 scores higher: rank 2
            [0.0, 0.6, 0.8],  # -> audio 2, rank 1
            [0.0, 0.6, 0.6],  # -> audio 2, tied with audio 1: rank 2 (pessimistic)
        ]
    )
    metrics = retrieval_metrics(text, audio, [0, 0, 1, 1, 2, 2])
    assert metrics["t2a_R@1"] == 50.0 and metrics["t2a_R@5"] == 100.0
    assert metrics["t2a_mAP@10"] == pytest.approx(75.0)
    assert (metrics["t2a_mean_rank"], metrics["t2a_median_rank"]) == (1.5, 1.0)
    # audio 0: captions 0 (1.0) rank 1, 1 (0.6) behind caption 3 (0.8): rank 3 -> AP (1/1 + 2/3) / 2
    # audio 1: captions 2 (1.0) rank 1, 3 (0.6) behind 1 (0.8), 5 (0.71) and 4 (0.6, tied): rank 5
    #   -> (1 + 2/5) / 2
    # audio 2: captions 4 (0.8) and 5 (0.71) ranks 1, 2 -> AP 1
    assert metrics["a2t_R@1"] == 100.0 and metrics["a2t_mean_rank"] == 1.0
    assert metrics["a2t_mAP@10"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + (1 + 2 / 5) / 2 + 1) / 3)


def test_a2t_takes_the_best_caption_and_audios_without_captions_are_distractors():
    audio = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])  # audio 2 has no caption
    text = np.array([[0.0, 1.0], [1.0, 0.1]])  # both describe audio 1
    metrics = retrieval_metrics(text, audio, [1, 1])
    assert metrics["t2a_R@1"] == 50.0 and metrics["t2a_mean_rank"] == 2.0  # caption 1: audios 0 and 2 first
    assert metrics["a2t_R@1"] == 100.0  # one query (audio 1), its best caption first
    assert metrics["a2t_mAP@10"] == 100.0


def test_audiocaps_like_ranks_and_figures_hand_computed():
    text, audio, links = _audiocaps_like(np.eye(DIM))
    ranks = retrieval_ranks(text, audio, links)
    assert ranks.t2a.tolist() == T2A_RANKS and ranks.a2t_captions.tolist() == A2T_RANKS
    assert ranks.queried.tolist() == [0, 1, 2]  # D has no caption: not an A2T query
    assert retrieval_metrics(text, audio, links) == pytest.approx(EXPECTED)
    unsorted = retrieval_metrics(text, audio, links, map_protocol="unsorted")
    assert unsorted == pytest.approx(EXPECTED | {"a2t_mAP@10": A2T_MAP["unsorted"]})  # 44.33: higher


def _keeping_caption_order(order: np.ndarray, links: np.ndarray) -> np.ndarray:
    """``order`` with each audio's captions put back in their relative order (what ``unsorted`` reads)."""
    order = order.copy()
    for audio in np.unique(links):
        order[links[order] == audio] = np.flatnonzero(links == audio)
    return order


@pytest.mark.parametrize("map_protocol", ["sorted", "unsorted"])
def test_no_permutation_of_the_items_changes_any_figure(map_protocol):
    """Copies of an audio and of a caption string tie exactly, whatever their positions: in 64-d under
    random rotations (float32 embeddings, float arithmetic at every step) and random orders of the audios
    and captions, every rank is the hand-computed one and every figure too (to the last bits a sum in
    another order may change). ``unsorted`` reads an audio's captions in order: the shuffles keep it."""
    expected = EXPECTED | {"a2t_mAP@10": A2T_MAP[map_protocol]}
    rng = np.random.default_rng(17)
    for _ in range(4):
        text, audio, links = _audiocaps_like(np.linalg.qr(rng.normal(size=(64, 64)))[0][:DIM])
        for _ in range(5):
            audio_order, caption_order = rng.permutation(len(audio)), rng.permutation(len(text))
            if map_protocol == "unsorted":
                caption_order = _keeping_caption_order(caption_order, links)
            args = text[caption_order], audio[audio_order], np.argsort(audio_order)[links[caption_order]]
            ranks = retrieval_ranks(*args)
            t2a = np.empty_like(ranks.t2a)
            t2a[caption_order] = ranks.t2a
            assert t2a.tolist() == T2A_RANKS
            a2t = dict(zip(audio_order[ranks.queried].tolist(), ranks.a2t_captions.tolist()))
            if map_protocol == "sorted":  # a shuffle may reorder an audio's captions
                a2t, hand = {key: sorted(row) for key, row in a2t.items()}, [sorted(row) for row in A2T_RANKS]
            else:
                hand = A2T_RANKS
            assert [a2t[audio] for audio in range(3)] == hand
            assert retrieval_metrics(*args, map_protocol) == pytest.approx(expected, rel=1e-12)


def _exact_unit_vectors() -> np.ndarray:
    """The 24 unit vectors of 4-d with coordinates in {0, +-0.5, +-1}: every cosine is exactly k/4."""
    axes = np.concatenate([np.eye(4), -np.eye(4)])
    halves = np.array(np.meshgrid(*[[-0.5, 0.5]] * 4)).reshape(4, -1).T
    return np.concatenate([axes, halves])


@pytest.mark.parametrize("map_protocol", ["sorted", "unsorted"])
def test_matches_a_plain_reference_with_ties_in_small_blocks(monkeypatch, map_protocol):
    rng = np.random.default_rng(0)
    vectors = _exact_unit_vectors()
    audio = vectors[rng.integers(0, 24, 40)]  # 40 audios from 24 vectors: many exact ties
    links = np.concatenate([np.arange(40), rng.integers(0, 40, 80)])
    text = vectors[rng.integers(0, 24, 120)]
    expected = _reference(text, audio, links, map_protocol)
    assert retrieval_metrics(text, audio, links, map_protocol) == pytest.approx(expected)
    monkeypatch.setattr(retrieval, "_BLOCK_CELLS", 50)
    assert retrieval_metrics(text, audio, links, map_protocol) == pytest.approx(expected)


def _wavcaps_reference(text: np.ndarray, audio: np.ndarray, links: np.ndarray) -> tuple[list, list]:
    """WavCaps' t2a/a2t arithmetic (tools/utils.py) in the benchmark's row order: a query's items ranked by
    np.argsort(scores)[::-1] (stable here, as numpy's default sort is up to 16 items), its rank the position
    of the relevant item; 1-based ranks, per caption and per audio with captions (in caption order)."""
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    audio = audio / np.linalg.norm(audio, axis=1, keepdims=True)
    sims = text @ audio.T
    t2a = [int(np.where(np.argsort(sims[i], kind="stable")[::-1] == links[i])[0][0]) + 1 for i in range(len(text))]
    a2t = []
    for a in sorted(set(links.tolist())):
        order = np.argsort(sims[:, a], kind="stable")[::-1]
        a2t.append([int(np.where(order == c)[0][0]) + 1 for c in np.flatnonzero(links == a)])
    return t2a, a2t


# The AudioCaps-like benchmark with exact ties broken by position, as WavCaps' argsort-then-reverse breaks
# them: of two tied items, the later in row order ranks first. T2A: B (A's copy, after it) still ranks
# before A for A's captions, but A no longer before B for B's, whose ranks drop by one.
T2A_BY_POSITION = [2, 3, 2, 3, 3] + [1, 1, 2, 2, 2] + [1, 1, 1, 1, 1]
# A2T: a caption string's copy counts only when it comes later. A's captions come first: [4, 15, 2, 6, 10] as
# before. B: "Music is playing" 0.9, A's copy is earlier: 1; drums 0.7, after the two 0.9: 3; "A woman speaks"
# 0.1 after ten higher and C's later copy: 12; "People are talking" 0.3 after six and C's copy: 8; "Wind blows"
# 0.05 after twelve and C's copy: 14. C (speech) scores its captions 0.6, 0.8, 0.7, 0.9, 0.2, every copy
# earlier: 7, 3, 5, 1, and 11 (after 0.9, 0.8, 0.7, 0.6 and 0.3, two of each).
A2T_BY_POSITION = [[4, 15, 2, 6, 10], [1, 3, 12, 8, 14], [7, 3, 5, 1, 11]]
# sorted AP@10: A 0.38 as before; B (1/1 + 2/3 + 3/8) / 5; C (1/1 + 2/3 + 3/5 + 4/7) / 5. Unsorted, in caption
# order: A 0.43, B the same, C (1/7 + 2/3 + 3/5 + 4/1) / 5
BY_POSITION_AP = {"sorted": (0.38, (1 + 2 / 3 + 3 / 8) / 5, (1 + 2 / 3 + 3 / 5 + 4 / 7) / 5),
                  "unsorted": (0.43, (1 + 2 / 3 + 3 / 8) / 5, (1 / 7 + 2 / 3 + 3 / 5 + 4) / 5)}
EXPECTED_BY_POSITION = {
    "t2a_R@1": 100 * 7 / 15, "t2a_R@5": 100.0, "t2a_R@10": 100.0,
    "t2a_mAP@10": 100 * (2.0 + 3.5 + 5) / 15,  # A 1/2+1/3+1/2+1/3+1/3, B 1+1+1/2+1/2+1/2, C 5: 70
    "a2t_R@1": 100 * 2 / 3, "a2t_R@5": 100.0, "a2t_R@10": 100.0, "a2t_mAP@10": 100 * sum(BY_POSITION_AP["sorted"]) / 3,
    "t2a_mean_rank": 26 / 15, "t2a_median_rank": 2.0, "a2t_mean_rank": 4 / 3, "a2t_median_rank": 1.0,
}


@pytest.mark.parametrize("map_protocol", ["sorted", "unsorted"])
def test_ties_broken_by_position_as_wavcaps_hand_computed(map_protocol):
    text, audio, links = _audiocaps_like(np.eye(DIM))
    ranks = position_ranks(text, audio, links)
    assert ranks.t2a.tolist() == T2A_BY_POSITION and ranks.a2t_captions.tolist() == A2T_BY_POSITION
    assert (ranks.t2a.tolist(), ranks.a2t_captions.tolist()) == _wavcaps_reference(text, audio, links)
    expected = EXPECTED_BY_POSITION | {"a2t_mAP@10": 100 * sum(BY_POSITION_AP[map_protocol]) / 3}
    assert summarize_ranks(ranks, map_protocol=map_protocol) == pytest.approx(expected)
    # the tie-robust figures are never higher: ties there count against the model
    robust = retrieval_metrics(text, audio, links, map_protocol)
    assert robust["t2a_R@1"] < expected["t2a_R@1"] and robust["a2t_R@1"] < expected["a2t_R@1"]


def test_position_ranks_match_wavcaps_arithmetic_with_many_ties_in_small_blocks(monkeypatch):
    rng = np.random.default_rng(1)
    vectors = _exact_unit_vectors()
    audio = vectors[rng.integers(0, 24, 30)]  # exact cosines k/4: many ties, copies of audios and captions
    links = np.concatenate([np.arange(30), rng.integers(0, 30, 60)])
    text = vectors[rng.integers(0, 24, 90)]
    expected = _wavcaps_reference(text, audio, links)
    for cells in (1 << 23, 40):
        monkeypatch.setattr(retrieval, "_BLOCK_CELLS", cells)
        ranks = position_ranks(text, audio, links)
        padded = [row[: len(hand)] for row, hand in zip(ranks.a2t_captions.tolist(), expected[1])]
        assert (ranks.t2a.tolist(), padded) == expected


def test_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="one audio index per caption"):
        retrieval_metrics(np.eye(2), np.eye(2), [0])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 2])
    with pytest.raises(ValueError, match="need \\(captions, d\\)"):
        retrieval_metrics(np.eye(2), np.eye(3), [0, 1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        retrieval_metrics([[np.nan, 0.0]], np.eye(2), [0])
    with pytest.raises(ValueError, match="'laion'.*'sorted'.*'unsorted'"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], map_protocol="laion")


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    audio = rng.normal(size=(30, 8))
    links = np.repeat(np.arange(30), 2)
    text = audio[links] + rng.normal(scale=1.0, size=(60, 8))
    metrics = retrieval_metrics(text, audio, links)
    intervals = retrieval_confidence_intervals(text, audio, links, n_resamples=200, seed=3)
    assert set(intervals) == set(RETRIEVAL_KEYS)
    for key, (low, high) in intervals.items():
        assert low <= metrics[key] <= high, key
    assert intervals["t2a_R@1"][0] < intervals["t2a_R@1"][1]
    assert retrieval_confidence_intervals(text, audio, links, n_resamples=200, seed=3) == intervals


def test_evaluate_module_loads_offline_by_path():
    import evaluate

    metric = evaluate.load(module_path("clap_retrieval"))
    text = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])
    result = metric.compute(text_embeds=text, text_to_audio=[0, 1, 1], audio_embeds=np.eye(2))
    assert result == pytest.approx(retrieval_metrics(text, np.eye(2), [0, 1, 1]))
    text, audio, links = _audiocaps_like(np.eye(DIM))
    result = metric.compute(text_embeds=text, text_to_audio=links, audio_embeds=audio, map_protocol="unsorted")
    assert result["a2t_mAP@10"] == pytest.approx(A2T_MAP["unsorted"])


@pytest.fixture(scope="module")
def retrieval_folder(tmp_path_factory, eval_clips) -> Path:
    folder = tmp_path_factory.mktemp("retrieval-benchmark")
    table = datasets.Dataset.from_dict(
        {
            "id": ["music", "noise", "speech", "silence"],
            "audio": [eval_clips[name] for name in ("music", "noise", "speech", "silence")],
            "captions": [
                ["Music plays.", "Drums and chords."],
                ["Wind."],
                ["A man speaks.", "Talking.", " "],
                [],
            ],
        }
    ).cast_column("audio", datasets.Audio())
    table.to_parquet(str(folder / "test.parquet"))
    return folder


def test_evaluate_retrieval_on_a_small_benchmark(tiny_zoo, retrieval_folder):
    table = datasets.load_dataset(str(retrieval_folder), split="test")
    clap = load_clap(str(tiny_zoo["clap"]), device="cpu")
    result = evaluate_retrieval(clap, table, batch_size=3, n_resamples=50)
    assert (result["n_audios"], result["n_captions"], result["n_queries"]) == (4, 5, {"t2a": 5, "a2t": 3})
    assert list(result["metrics"]) == list(RETRIEVAL_KEYS)
    assert (
        1.0 <= result["metrics"]["t2a_mean_rank"] <= 4.0 and 1.0 <= result["metrics"]["a2t_mean_rank"] <= 5.0
    )
    assert set(result["confidence_intervals"]) == set(RETRIEVAL_KEYS)


class DesignedClap:
    """A stand-in CLAP whose embeddings the test chooses: a clip's by the eval clip it was decoded from, a
    caption's by its string (:data:`COSINES`). Like a model on a GPU, it gives one input slightly different
    numbers at another position of a batch (1e-4 per position), which must not break an exact tie."""

    sampling_rate = 16000
    dim = DIM

    def __init__(self, clips: dict[str, np.ndarray]) -> None:
        self.clips = clips  # eval clip name -> its samples as the evaluation decodes them

    @staticmethod
    def _jittered(rows: list[np.ndarray], axis: int) -> np.ndarray:
        rows = np.array(rows)
        rows[:, axis] += 1e-4 * np.arange(len(rows))
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    def embed_audio(self, clips):
        names = [next(name for name, ref in self.clips.items() if np.array_equal(ref, clip)) for clip in clips]
        return self._jittered([AUDIO_VECTORS[name] for name in names], axis=1)

    def embed_text(self, texts):
        return self._jittered([_text_vector(text) for text in texts], axis=0)


@pytest.fixture(scope="module")
def audiocaps_folder(tmp_path_factory, eval_clips) -> Path:
    """:data:`CAPTIONS` as ``build audiocaps`` writes a test set: YouTube ids, one audio file per clip (A's
    and B's hold the same audio), the captions as a list."""
    folder = tmp_path_factory.mktemp("audiocaps-test")
    ids = {"A": "7fmOlUlwoNg", "B": "6BJ455B1aAs", "C": "GOD8Bt5LfDE", "D": "YQSuFyFm3Lc"}
    for clip, ytid in ids.items():
        shutil.copy(eval_clips[AUDIO_OF[clip]], folder / f"Y{ytid}.wav")
    table = datasets.Dataset.from_dict(
        {
            "id": list(ids.values()),
            "clip_id": list(ids.values()),
            "audio": [str(folder / f"Y{ytid}.wav") for ytid in ids.values()],
            "captions": [CAPTIONS[clip] for clip in ids],
        },
        features=RETRIEVAL_FEATURES,
    )
    table.to_parquet(str(folder / "test.parquet"))
    return folder


@pytest.fixture(scope="module")
def designed_clap(audiocaps_folder, eval_clips) -> DesignedClap:
    clips = datasets.Dataset.from_dict({"audio": [eval_clips[name] for name in AUDIO_VECTORS]})
    decoded = MediaBatch(clips.cast_column("audio", datasets.Audio())[:]).audio(DesignedClap.sampling_rate)
    return DesignedClap({name: clip[0] for name, clip in zip(AUDIO_VECTORS, decoded)})


@pytest.mark.parametrize("map_protocol", ["sorted", "unsorted"])
def test_evaluate_retrieval_ties_copies_and_reports_each_protocol(audiocaps_folder, designed_clap, map_protocol):
    """The hand-computed figures come out of the whole evaluation although the model embeds one audio or
    caption differently at another batch position: each distinct one is embedded once. The report names
    each figure's protocol and counts the queries each direction had (D, without captions, is none)."""
    table = datasets.load_dataset(str(audiocaps_folder), split="test")
    result = evaluate_retrieval(designed_clap, table, batch_size=2, n_resamples=0, map_protocol=map_protocol)
    assert result["metrics"] == pytest.approx(EXPECTED | {"a2t_mAP@10": A2T_MAP[map_protocol]})
    assert (result["n_audios"], result["n_queries"]) == (4, {"t2a": 15, "a2t": 3})
    assert result["position_metrics"] == pytest.approx(
        EXPECTED_BY_POSITION | {"a2t_mAP@10": 100 * sum(BY_POSITION_AP[map_protocol]) / 3})
    report_rows = retrieval_report_rows("audiocaps", result)
    rows = {(row["task"], row["metric"], row["protocol"].rstrip(")").rsplit("+", 1)[-1]): row for row in report_rows}
    assert len(rows) == len(report_rows) == 2 * 3 * 6  # two tie rules, three tasks, six metrics
    robust, by_position = "ties-against-model", "ties-by-position"
    assert {task: rows[task, "R@1", robust]["n"] for task in ("t2a", "a2t", "overall")} == {
        "t2a": 15, "a2t": 3, "overall": 3}
    assert rows["a2t", "mAP@10", robust]["protocol"] == f"a2t_map@10/{map_protocol}+ties-against-model"
    assert rows["overall", "mAP@10", robust] == {
        "benchmark": "audiocaps", "task": "overall", "metric": "mAP@10", "n": 3,
        "value": pytest.approx((60 + A2T_MAP[map_protocol]) / 2),
        "protocol": f"mean(t2a/each-caption+ties-against-model, a2t_map@10/{map_protocol}+ties-against-model)",
    }
    assert rows["t2a", "R@1", by_position]["value"] == pytest.approx(100 * 7 / 15)
    assert rows["t2a", "R@1", by_position]["protocol"] == "t2a/each-caption+ties-by-position"
    assert rows["a2t", "R@1", by_position]["protocol"] == "a2t/best-caption+ties-by-position"
    assert rows["overall", "R@1", by_position]["value"] == pytest.approx((100 * 7 / 15 + 100 * 2 / 3) / 2)
    assert report_rows[0]["protocol"].endswith("+ties-against-model")  # the headline comes first


def test_an_unknown_map_protocol_is_refused_before_any_work(audiocaps_folder):
    with pytest.raises(ValueError, match="unknown A2T mAP@10 protocol 'laion-clap'"):
        run_retrieval_eval("no/model", str(audiocaps_folder), "unused", map_protocol="laion-clap")


def test_a_clip_that_cannot_be_decoded_stops_the_evaluation(tiny_zoo, eval_clips):
    table = datasets.Dataset.from_dict(
        {"id": ["x", "y"], "audio": [eval_clips["music"], eval_clips["corrupt"]], "captions": [["a"], ["b"]]}
    )
    with pytest.raises(ValueError, match="1 clip\\(s\\) .* first row 1 \\(id 'y'\\)"):
        evaluate_retrieval(load_clap(str(tiny_zoo["clap"]), device="cpu"), table)


def test_eval_retrieval_writes_the_report(tmp_path, tiny_zoo, retrieval_folder):
    report = run_retrieval_eval(
        str(tiny_zoo["clap"]),
        str(retrieval_folder),
        tmp_path / "report",
        device="cpu",
        n_resamples=20,
        benchmark="tiny-bench",
    )
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written == report and written["model"] == str(tiny_zoo["clap"])
    rows = {(row["task"], row["metric"]): row for row in written["results"]}
    assert {task for task, _ in rows} == {"t2a", "a2t", "overall"}
    assert all(row["benchmark"] == "tiny-bench" for row in written["results"])
    # the silence clip has no caption (the speech clip's third is blank): three A2T queries, five T2A
    assert rows["t2a", "R@1"]["n"] == 5 and rows["a2t", "R@1"]["n"] == 3 and rows["overall", "R@1"]["n"] == 3
    assert rows["a2t", "mAP@10"]["protocol"] == "a2t_map@10/sorted+ties-by-position"  # the later of the two rows
    assert all(row.get("protocol") for row in written["results"])
    assert rows["overall", "R@10"]["value"] == pytest.approx(
        (rows["t2a", "R@10"]["value"] + rows["a2t", "R@10"]["value"]) / 2
    )
    headline = {(row["task"], row["metric"]): row for row in written["results"]
                if row["protocol"].rstrip(")").endswith("+ties-against-model")}
    assert len(headline["t2a", "mAP@10"]["ci95"]) == 2 and "ci95" not in headline["overall", "mAP@10"]
    assert not any("ci95" in row for row in written["results"] if row not in headline.values())
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| tiny-bench | t2a | R@1 |" in markdown and "95% CI" in markdown


def test_eval_retrieval_command(tmp_path, tiny_zoo, retrieval_folder, capsys):
    from fusion_datasets.cli import main

    argv = ["eval", "retrieval", "--model", str(tiny_zoo["clap"]), "--dataset", str(retrieval_folder),
            "--output", str(tmp_path), "--device", "cpu", "--n-resamples", "10", "--map-protocol", "unsorted"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    report = json.loads((tmp_path / "report.json").read_text())
    assert {row["benchmark"] for row in report["results"]} == {retrieval_folder.name}
    rows = {(row["task"], row["metric"]): row for row in report["results"]}
    assert rows["a2t", "mAP@10"]["protocol"] == "a2t_map@10/unsorted+ties-by-position"
    assert "`a2t_map@10/unsorted+ties-against-model`" in (tmp_path / "report.md").read_text()
