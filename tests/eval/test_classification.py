"""Zero-shot classification from captions, with the tiny zoo's CLAP text tower as the text encoder."""

import json
import shutil

import evaluate
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from fusion_datasets.cli import main
from fusion_datasets.eval.classification import (
    DEFAULT_TEXT_ENCODER,
    average_precision,
    caption_scores,
    classification_metrics,
    load_text_encoder,
)
from fusion_datasets.evaluate_modules import module_path

VOCABULARY = "1,dog\n2,rain\n3,crickets\n4,church_bells\n"


def _results(output) -> dict[str, tuple[float, int]]:
    report = json.loads((output / "report.json").read_text())
    assert {row["task"] for row in report["results"]} == {"overall"}
    return {row["metric"]: (row["value"], row["n"]) for row in report["results"]}


def test_metrics_by_hand():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.6], [0.1, 0.3, 0.2], [0.5, 0.3, 0.6]])
    targets = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=bool)
    # top-1: right, wrong, right, wrong (a clip without labels is never right)
    # AP per class (a positive tied with a negative ranks after it): 1; 1/3 (0.7 first, 0.3 tied);
    # class 2: 1/2 (0.6 tied) then 2/3
    metrics = classification_metrics(scores, targets)
    assert metrics["accuracy"] == 50.0
    assert metrics["mAP"] == pytest.approx(100 * (1.0 + 1 / 3 + (1 / 2 + 2 / 3) / 2) / 3)


def test_average_precision_agrees_with_scikit_learn_on_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores, positives = rng.integers(0, 4, 40).astype(float), rng.random(40) < 0.3
        assert average_precision(scores, positives) == pytest.approx(
            average_precision_score(positives, scores)
        )


def _predictions(tmp_path, write_jsonl, captions: dict[str, str | None]):
    return write_jsonl(
        tmp_path / "captions.jsonl",
        [
            {"id": clip, "audio_id": f"clips/{clip}.wav", "instruction": None, "prediction": caption}
            for clip, caption in captions.items()
        ],
    )


@pytest.fixture
def esc50(make_benchmark, fa_row):
    rows = [
        fa_row(clip, "What is this sound?", label)
        for clip, label in [
            ("music", "church_bells"),
            ("noise", "rain"),
            ("speech", "dog"),
            ("silence", "crickets"),
        ]
    ]
    return make_benchmark("esc50", rows, files={"ESC50.csv": VOCABULARY})


def test_esc50_captions_that_name_the_labels(esc50, tiny_zoo, write_jsonl, tmp_path):
    captions = {
        "music": "sound of church_bells",
        "noise": "sound of rain",
        "speech": "sound of dog",
        "silence": "sound of crickets",
    }
    file = _predictions(tmp_path, write_jsonl, captions)
    assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(esc50), "--output",
                 str(tmp_path / "report"), "--text-encoder", str(tiny_zoo["clap"])]) == 0
    # each caption is its label's prompt: cosine 1, above every other label's (a random encoder's) cosine
    assert _results(tmp_path / "report") == {"accuracy": (100.0, 4), "mAP": (100.0, 4), "coverage": (100.0, 4)}


def test_esc50_wrong_and_missing_captions(esc50, tiny_zoo, write_jsonl, tmp_path):
    captions = {"music": "sound of church_bells", "noise": "sound of dog", "speech": "sound of dog"}
    file = _predictions(tmp_path, write_jsonl, captions)
    output, index = tmp_path / "report", tmp_path / "model-index.yaml"
    assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(esc50), "--output",
                 str(output), "--text-encoder", str(tiny_zoo["clap"]), "--model-index", str(index)]) == 0
    results = _results(output)
    assert results["accuracy"] == (50.0, 4) and results["coverage"] == (75.0, 4)
    # mAP recomputed independently: scikit-learn on the encoder's similarities of the captioned clips; the
    # silent clip is crickets' one positive, never credited: crickets' AP is 0
    labels = ["dog", "rain", "crickets", "church_bells"]
    scores = caption_scores(
        [captions["music"], captions["noise"], captions["speech"], None],
        labels,
        load_text_encoder(str(tiny_zoo["clap"])),
    )
    targets = np.eye(4, dtype=bool)[[3, 1, 0, 2]]
    assert scores[3].tolist() == [-1.0] * 4
    expected = np.mean([average_precision_score(targets[:3, label], scores[:3, label]) for label in (0, 1, 3)] + [0])
    assert results["mAP"][0] == pytest.approx(100 * expected)
    assert "type: audio-classification" in index.read_text() and "coverage" not in index.read_text()


def test_fsd50k_multi_label(make_benchmark, fa_row, tiny_zoo, write_jsonl, tmp_path):
    rows = [
        fa_row("music", "Label it.", "Labels: church_bells; rain"),
        fa_row("noise", "Label it.", "Labels: rain"),
        fa_row("speech", "Label it.", "Labels: dog; crickets"),
    ]
    benchmark = make_benchmark("fsd50k", rows, files={"FSD50K.csv": VOCABULARY})
    captions = {"music": "sound of rain", "noise": "sound of rain", "speech": "sound of crickets"}
    file = _predictions(tmp_path, write_jsonl, captions)
    assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(benchmark), "--output",
                 str(tmp_path / "report"), "--text-encoder", str(tiny_zoo["clap"])]) == 0
    results = _results(tmp_path / "report")
    assert results["accuracy"] == (100.0, 3)  # each top label is one of the clip's labels
    scores = caption_scores(
        list(captions.values()),
        ["dog", "rain", "crickets", "church_bells"],
        load_text_encoder(str(tiny_zoo["clap"])),
    )
    targets = np.array([[0, 1, 0, 1], [0, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)
    expected = np.mean([average_precision_score(targets[:, label], scores[:, label]) for label in range(4)])
    assert results["mAP"][0] == pytest.approx(100 * expected)


def test_evaluate_module(tiny_zoo):
    metric = evaluate.load(module_path("audio_classification"))
    result = metric.compute(
        predictions=["sound of dog", "sound of rain"],
        references=[["dog"], ["rain"]],
        vocabulary=["dog", "rain", "crickets"],
        text_encoder=str(tiny_zoo["clap"]),
    )
    assert result == {"accuracy": 100.0, "mAP": 100.0, "coverage": 100.0}
    by_fold = metric.compute(predictions=["sound of dog", "sound of dog"], references=[["dog"], ["rain"]],
                             vocabulary=["dog", "rain"], text_encoder=str(tiny_zoo["clap"]), folds=[1, 2])
    assert by_fold["accuracy"] == 50.0 and by_fold["per_fold"][2]["accuracy"] == 0.0
    with pytest.raises(ValueError, match="labels not in the vocabulary: owl"):
        metric.compute(
            predictions=["sound of owl"],
            references=[["owl"]],
            vocabulary=["dog"],
            text_encoder=str(tiny_zoo["clap"]),
        )


ESC50_CLIPS = [("1-100032-A-0.wav", 1, 0, "dog", "music"), ("2-100648-A-10.wav", 2, 10, "rain", "noise"),
               ("2-100786-A-34.wav", 2, 34, "crickets", "speech"), ("2-101-B-46.wav", 2, 46, "church_bells", "silence")]


@pytest.fixture
def esc50_folds(tmp_path, eval_clips):
    """ESC-50 as downloaded (``meta/esc50.csv``, ``audio/``), four clips in folds 1 and 2, built."""
    from fusion_datasets.builders import build

    data = tmp_path / "ESC-50-master"
    (data / "meta").mkdir(parents=True)
    (data / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n" + "".join(
        f"{name},{fold},{target},{label},False,{name.split('-')[1]},{name.split('-')[2]}\n"
        for name, fold, target, label, _ in ESC50_CLIPS))
    (data / "audio").mkdir()
    for name, *_, clip in ESC50_CLIPS:
        shutil.copy(eval_clips[clip], data / "audio" / name)
    build("esc50", data, tmp_path / "esc50")
    return tmp_path / "esc50"


def _fold_results(tmp_path, write_jsonl, tiny_zoo, benchmark, captions) -> dict:
    """``eval classification`` of ``captions`` (one per ESC50_CLIPS clip, None: no line for it) by task and metric."""
    file = write_jsonl(tmp_path / "captions.jsonl", [
        {"id": name, "audio_id": f"audio/{name}", "instruction": None, "prediction": caption}
        for (name, *_), caption in zip(ESC50_CLIPS, captions) if caption is not None])
    assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(benchmark),
                 "--output", str(tmp_path / "report"), "--text-encoder", str(tiny_zoo["clap"])]) == 0
    rows = json.loads((tmp_path / "report" / "report.json").read_text())["results"]
    assert all(row["protocol"].startswith("zero-shot/caption-text/") for row in rows)
    return {(row["task"], row["metric"], row["protocol"].rsplit("/", 1)[1]): (row["value"], row["n"]) for row in rows}


def test_esc50_is_scored_per_clip_per_fold_and_averaged_over_folds(tmp_path, esc50_folds, tiny_zoo, write_jsonl,
                                                                   caplog):
    """A native ESC-50 build keeps its folds: the headline is per clip over the benchmark; each fold's clips are
    also scored alone, and their mean over folds is beside it with n the number of folds."""
    captions = ["sound of dog", "sound of rain", "sound of dog", "sound of rain"]  # fold 1: 1/1, fold 2: 1/3
    results = _fold_results(tmp_path, write_jsonl, tiny_zoo, esc50_folds, captions)
    assert results["fold1", "accuracy", "one-fold"] == (100.0, 1)
    assert results["fold2", "accuracy", "one-fold"] == (pytest.approx(100 / 3), 3)
    assert results["overall", "accuracy", "all-clips"] == (50.0, 4)  # 2 of the 4 clips
    assert results["overall", "accuracy", "mean-over-2-folds"] == (pytest.approx(200 / 3), 2)
    labels = ["dog", "rain", "crickets", "church_bells"]  # the vocabulary, by ESC-50's target
    scores = caption_scores(captions, labels, load_text_encoder(str(tiny_zoo["clap"])))
    targets = np.eye(4, dtype=bool)
    every = np.mean([average_precision_score(targets[:, label], scores[:, label]) for label in range(4)])
    fold2 = np.mean([average_precision_score(targets[1:, label], scores[1:, label]) for label in (1, 2, 3)])
    assert results["overall", "mAP", "all-clips"][0] == pytest.approx(100 * every)
    assert results["fold2", "mAP", "one-fold"][0] == pytest.approx(100 * fold2)
    assert results["overall", "mAP", "mean-over-2-folds"][0] == pytest.approx((100 + 100 * fold2) / 2)
    assert results["overall", "coverage", "all-clips"] == (100.0, 4)
    # a fold of 1 clip beside one of 3: the mean over folds is warned about
    assert any("folds of 1: 1, 2: 3 clips" in record.message for record in caplog.records)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["settings"] == {"text_encoder": str(tiny_zoo["clap"]), "template": "sound of {label}",
                                  "text_form": "caption", "split": "test"}
    markdown = (tmp_path / "report" / "report.md").read_text()
    first = markdown.split("\n## All results", 1)[0]  # the paper table shows the per-clip figure
    assert "| 50.00 |" in first


def test_a_missing_caption_is_wrong_and_never_credited():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [-1.0, -1.0]])
    targets = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], dtype=bool)
    answered = np.array([True, True, True, False])  # clip 3 has no caption
    # accuracy: right, right, wrong (0.7 on class 0), and the missing clip wrong: 2/4 (it would win the
    # tie for class 0, its label, if its -1s counted)
    # AP class 0: 0.9 is a positive at rank 1 (precision 1); the missing positive is never reached (0): 1/2
    # AP class 1: 0.8 and 0.3 are positives at ranks 1 and 2 (precision 1, 1): 1; mAP (1/2 + 1) / 2
    metrics = classification_metrics(scores, targets, answered)
    assert metrics == {"accuracy": 50.0, "mAP": 75.0}
    assert classification_metrics(scores, targets) == {"accuracy": 75.0, "mAP": 87.5}  # the -1s as scores


def test_predictions_that_name_no_clip_are_refused(esc50, tiny_zoo, write_jsonl, tmp_path, capsys):
    """Not a 0.00 report: an empty file, or another benchmark's predictions, is a mistake (as in eval qa)."""
    for records in ([], [{"id": "x", "audio_id": "other/clip.wav", "prediction": "sound of dog"}]):
        file = write_jsonl(tmp_path / "captions.jsonl", records)
        assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(esc50), "--output",
                     str(tmp_path / "report"), "--text-encoder", str(tiny_zoo["clap"])]) == 2
        assert "are they this benchmark's predictions?" in capsys.readouterr().err
        assert not (tmp_path / "report").exists()


def test_a_low_coverage_is_warned_about(esc50, tiny_zoo, write_jsonl, tmp_path, caplog):
    file = _predictions(tmp_path, write_jsonl, {"music": "sound of church_bells"})
    assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(esc50), "--output",
                 str(tmp_path / "report"), "--text-encoder", str(tiny_zoo["clap"])]) == 0
    assert any("only 25.0% of the 4 clips have a caption" in record.message for record in caplog.records)


def test_esc50_folds_with_a_missing_caption(tmp_path, esc50_folds, tiny_zoo, write_jsonl):
    captions = ["sound of dog", "sound of rain", None, "sound of church_bells"]  # no line for the crickets clip
    results = _fold_results(tmp_path, write_jsonl, tiny_zoo, esc50_folds, captions)
    # each caption is its label's prompt: cosine 1, its clip first for its label. Fold 1: dog right, AP 1.
    # Fold 2: rain and church_bells right, crickets (no caption) wrong: 2/3; AP rain 1, church_bells 1,
    # crickets 0 (its one positive has no caption): mAP 2/3. All clips: 3/4 right, mAP (1 + 1 + 0 + 1) / 4.
    assert results["fold1", "accuracy", "one-fold"] == results["fold1", "mAP", "one-fold"] == (100.0, 1)
    assert results["fold2", "accuracy", "one-fold"] == results["fold2", "mAP", "one-fold"] == \
        (pytest.approx(200 / 3), 3)
    assert results["overall", "accuracy", "all-clips"] == results["overall", "mAP", "all-clips"] == (75.0, 4)
    assert results["overall", "mAP", "mean-over-2-folds"] == (pytest.approx(250 / 3), 2)
    assert results["overall", "coverage", "all-clips"] == (75.0, 4)


def test_fusionaudio_text_form_is_its_own_protocol(tmp_path, esc50, tiny_zoo, write_jsonl):
    """FusionAudio embeds "sound of " + the caption in lower case: "DOG" then scores as the label's prompt."""
    file = _predictions(tmp_path, write_jsonl, {"music": "CHURCH_BELLS", "noise": "Rain", "speech": "DOG",
                                                "silence": "Crickets"})
    assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(esc50), "--output",
                 str(tmp_path / "report"), "--text-encoder", str(tiny_zoo["clap"]), "--text-form",
                 "fusionaudio"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {row["protocol"] for row in report["results"]} == {"zero-shot/fusionaudio-text/all-clips"}
    assert report["settings"]["text_form"] == "fusionaudio"
    encoder = load_text_encoder(str(tiny_zoo["clap"]))
    assert np.allclose(caption_scores(["DOG"], ["dog"], encoder, text_form="fusionaudio"),
                       caption_scores(["sound of dog"], ["dog"], encoder))


def test_a_plain_text_model_encodes_by_mean_pooling(tiny_zoo):
    """The path of the default (sentence-transformers) encoder, with the zoo's tiny Qwen2 as the model."""
    encoder = load_text_encoder(str(tiny_zoo["chat-lm"]))
    embeddings = encoder(["sound of dog", "sound of rain", "a much longer sentence about rain"])
    assert embeddings.shape[0] == 3 and np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    scores = caption_scores(["sound of rain", None], ["dog", "rain"], encoder)
    assert scores[0].argmax() == 1 and scores[0, 1] == pytest.approx(1.0, abs=1e-5)


def test_the_default_text_encoder_offline_is_named_in_one_line(esc50, write_jsonl, tmp_path, capsys, monkeypatch):
    """Offline and not in the cache (the tests' empty Hub cache), the default encoder fails naming itself."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    file = _predictions(tmp_path, write_jsonl, {"music": "sound of church_bells"})
    assert main(["eval", "classification", "--predictions", str(file), "--benchmark", str(esc50), "--output",
                 str(tmp_path / "report")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"fusion-datasets: error: cannot load the model '{DEFAULT_TEXT_ENCODER}': ")
    assert f"`hf download {DEFAULT_TEXT_ENCODER}`" in last and "HF_HUB_OFFLINE=1" in last
    assert not (tmp_path / "report").exists()
