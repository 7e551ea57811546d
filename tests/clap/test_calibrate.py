import json
import math
from pathlib import Path

import numpy as np
import pytest

from fusion_datasets.clap.calibrate import calibrate_filter, calibrate_threshold, plot_calibration
from fusion_datasets.clap.judgements import load_judgements


def _f_beta(precision: float, recall: float, beta: float) -> float:
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def test_separable_scores_give_the_midpoint_of_the_gap():
    rng = np.random.default_rng(0)
    good = rng.uniform(0.15, 0.5, 150)
    bad = rng.uniform(-0.2, 0.05, 150)
    result = calibrate_threshold(np.concatenate([good, bad]), [True] * 150 + [False] * 150)
    assert result.threshold == pytest.approx((good.min() + bad.max()) / 2)
    assert (result.f_beta, result.precision, result.recall, result.agreement) == (1.0, 1.0, 1.0, 1.0)
    assert result.removed_share == 0.5 and result.beta == 1.05 and (result.n, result.n_good) == (300, 150)


def test_overlapping_scores_against_a_hand_computed_f_beta():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5]
    labels = [False, True, False, True, True]
    # candidates 0.1, 0.15, 0.25, 0.35, 0.45 keep 5, 4, 3, 2, 1 captions; 0.15 keeps all 3 good of 4
    result = calibrate_threshold(scores, labels)
    assert result.threshold == pytest.approx(0.15)
    assert result.precision == 0.75 and result.recall == 1.0
    assert result.f_beta == pytest.approx(_f_beta(0.75, 1.0, 1.05))
    assert result.agreement == pytest.approx(0.8) and result.removed_share == pytest.approx(0.2)
    # a small beta favours precision: 0.35 keeps only good captions (2 of 3)
    precise = calibrate_threshold(scores, labels, beta=0.3)
    assert precise.threshold == pytest.approx(0.35)
    assert precise.f_beta == pytest.approx(_f_beta(1.0, 2 / 3, 0.3))


def test_unscored_rows_are_left_out_and_counted():
    result = calibrate_threshold([0.1, None, 0.5, float("nan")], [False, True, True, False])
    assert (result.n, result.n_unscored, result.threshold) == (2, 2, pytest.approx(0.3))


def test_calibration_input_errors():
    with pytest.raises(ValueError, match="at least one good caption"):
        calibrate_threshold([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        calibrate_threshold([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="beta must be > 0"):
        calibrate_threshold([0.1], [True], beta=0)


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_judgements_with_labels_or_scores(tmp_path):
    labelled = _write_csv(
        tmp_path / "labels.csv", "id,caption,label", ["1,a,good", "2,b,BAD", "3,c,yes", "4,d,0"]
    )
    table = load_judgements(labelled)
    assert table["good"] == [True, False, True, False] and table["id"] == ["1", "2", "3", "4"]
    rated = _write_csv(tmp_path / "scores.csv", "id,caption,score", ["1,a,1", "2,b,3", "3,c,5"])
    assert load_judgements(rated, score_cutoff=2)["good"] == [True, False, False]
    assert load_judgements(rated, score_cutoff=3, higher_is_better=True)["good"] == [False, True, True]
    with pytest.raises(ValueError, match="lacks the column.*label.*score_cutoff"):
        load_judgements(rated)
    odd = _write_csv(tmp_path / "odd.csv", "id,caption,label", ["1,a,maybe"])
    with pytest.raises(ValueError, match="cannot read 'maybe' as a good/bad label"):
        load_judgements(odd)


def test_plot_is_a_png(tmp_path):
    scores, labels = [0.1, 0.2, 0.3, 0.4], [False, False, True, True]
    path = plot_calibration(scores, labels, calibrate_threshold(scores, labels), tmp_path / "plots" / "c.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_calibrate_filter_end_to_end(tmp_path, tiny_zoo, clap_clips):
    root = Path(clap_clips["music"]).parent
    rows = [
        "music,Music with drums.,good",
        "noise,Wind blows.,good",
        "speech,A man speaks.,bad",
        "gone,Rain.,bad",
    ]
    judgements = _write_csv(tmp_path / "judgements.csv", "id,caption,label", rows)
    result = calibrate_filter(
        judgements, str(tiny_zoo["clap"]), tmp_path / "out", audio_root=root, batch_size=2
    )
    assert (result.n, result.n_good, result.n_unscored) == (3, 2, 1)  # no clip "gone" under the root
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert report["threshold"] == result.threshold and report["beta"] == 1.05
    assert [row["id"] for row in report["rows"]] == ["music", "noise", "speech", "gone"]
    assert report["rows"][3]["clap_score"] is None
    assert all(-1 <= row["clap_score"] <= 1 for row in report["rows"][:3])
    assert (tmp_path / "out" / "calibration.png").read_bytes().startswith(b"\x89PNG")
    assert not math.isnan(result.f_beta) and "threshold" in result.summary()


def test_relative_audio_paths_resolve_under_the_root(tmp_path, tiny_zoo, clap_clips):
    root = Path(clap_clips["music"]).parent
    rows = ["a,music.wav,Music.,good", "b,noise.wav,Noise.,bad"]
    judgements = _write_csv(tmp_path / "judgements.csv", "id,audio,caption,label", rows)
    result = calibrate_filter(judgements, str(tiny_zoo["clap"]), tmp_path / "out", audio_root=root)
    assert (result.n, result.n_unscored) == (2, 0)


def test_calibrate_filter_command(tmp_path, tiny_zoo, clap_clips, capsys):
    from fusion_datasets.cli import main

    rows = ["music,Music with drums.,good", "noise,Wind blows.,bad"]
    judgements = _write_csv(tmp_path / "judgements.csv", "id,caption,label", rows)
    argv = ["calibrate-filter", str(judgements), "--model", str(tiny_zoo["clap"]), "--output", str(tmp_path / "out"),
            "--audio-root", str(Path(clap_clips["music"]).parent), "--device", "cpu"]
    assert main(argv) == 0
    assert "threshold" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "calibration.json").read_text())["beta"] == 1.05
