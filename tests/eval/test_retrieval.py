import json
from pathlib import Path

import datasets
import numpy as np
import pytest

import fusion_datasets.eval.retrieval as retrieval
from fusion_datasets.clap.embed import load_clap
from fusion_datasets.eval import (
    RETRIEVAL_KEYS,
    evaluate_retrieval,
    retrieval_confidence_intervals,
    retrieval_metrics,
    run_retrieval_eval,
)
from fusion_datasets.evaluate_modules import module_path


def _reference(text: np.ndarray, audio: np.ndarray, links: np.ndarray) -> dict[str, float]:
    """A plain, loop-per-query version of the protocol (pessimistic ties, sorted A2T ranks)."""
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    audio = audio / np.linalg.norm(audio, axis=1, keepdims=True)
    sims = text @ audio.T
    t2a = np.array([np.sum(sims[i] >= sims[i, links[i]]) for i in range(len(text))])
    a2t, ap = [], []
    for a in sorted(set(links.tolist())):
        own = np.sort(sims[links == a, a])[::-1]
        others = sims[links != a, a]
        ranks = [i + 1 + np.sum(others >= s) for i, s in enumerate(own)]
        a2t.append(ranks[0])
        ap.append(sum((i + 1) / r for i, r in enumerate(ranks) if r <= 10) / len(own))
    out = {}
    for name, ranks, precision in (
        ("t2a", t2a, np.where(t2a <= 10, 1 / t2a, 0)),
        ("a2t", np.array(a2t), np.array(ap)),
    ):
        out |= {f"{name}_R@{k}": 100 * np.mean(ranks <= k) for k in (1, 5, 10)}
        out |= {f"{name}_mAP@10": 100 * np.mean(precision), f"{name}_mean_rank": np.mean(ranks)}
        out[f"{name}_median_rank"] = np.floor(np.median(ranks))
    return out


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


def _exact_unit_vectors() -> np.ndarray:
    """The 24 unit vectors of 4-d with coordinates in {0, +-0.5, +-1}: every cosine is exactly k/4."""
    axes = np.concatenate([np.eye(4), -np.eye(4)])
    halves = np.array(np.meshgrid(*[[-0.5, 0.5]] * 4)).reshape(4, -1).T
    return np.concatenate([axes, halves])


def test_matches_a_plain_reference_with_ties_in_small_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    vectors = _exact_unit_vectors()
    audio = vectors[rng.integers(0, 24, 40)]  # 40 audios from 24 vectors: many exact ties
    links = np.concatenate([np.arange(40), rng.integers(0, 40, 80)])
    text = vectors[rng.integers(0, 24, 120)]
    expected = _reference(text, audio, links)
    assert retrieval_metrics(text, audio, links) == pytest.approx(expected)
    monkeypatch.setattr(retrieval, "_BLOCK_CELLS", 50)
    assert retrieval_metrics(text, audio, links) == pytest.approx(expected)


def test_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="one audio index per caption"):
        retrieval_metrics(np.eye(2), np.eye(2), [0])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 2])
    with pytest.raises(ValueError, match="need \\(captions, d\\)"):
        retrieval_metrics(np.eye(2), np.eye(3), [0, 1])


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
    assert (result["n_audios"], result["n_captions"]) == (4, 5)
    assert list(result["metrics"]) == list(RETRIEVAL_KEYS)
    assert (
        1.0 <= result["metrics"]["t2a_mean_rank"] <= 4.0 and 1.0 <= result["metrics"]["a2t_mean_rank"] <= 5.0
    )
    assert set(result["confidence_intervals"]) == set(RETRIEVAL_KEYS)


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
    assert rows["t2a", "R@1"]["n"] == 5 and rows["a2t", "R@1"]["n"] == 4 and rows["overall", "R@1"]["n"] == 4
    assert rows["overall", "R@10"]["value"] == pytest.approx(
        (rows["t2a", "R@10"]["value"] + rows["a2t", "R@10"]["value"]) / 2
    )
    assert len(rows["t2a", "mAP@10"]["ci95"]) == 2 and "ci95" not in rows["overall", "mAP@10"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| tiny-bench | t2a | R@1 |" in markdown and "95% CI" in markdown


def test_eval_retrieval_command(tmp_path, tiny_zoo, retrieval_folder, capsys):
    from fusion_datasets.cli import main

    argv = ["eval", "retrieval", "--model", str(tiny_zoo["clap"]), "--dataset", str(retrieval_folder),
            "--output", str(tmp_path), "--device", "cpu", "--n-resamples", "10"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    report = json.loads((tmp_path / "report.json").read_text())
    assert {row["benchmark"] for row in report["results"]} == {retrieval_folder.name}
