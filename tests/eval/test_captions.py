"""``eval captions`` on a built Clotho of 30 clips x 5 references: figures against pycocoevalcap 1.2's, FENSE
through tiny random models, CLAP-sim through the zoo's CLAP, order and batch invariance, bad input."""

import csv
import json
import re
import shutil

import numpy as np
import pytest

from fusion_datasets.cli import main
from fusion_datasets.eval.captions import CaptionOptions, score_captions, simple_tokenize
from fusion_datasets.testing.stub_chat import StubChatServer

SCENES = ["a dog barks", "rain falls on a tin roof", "a car engine starts", "birds chirp in the trees",
          "a baby cries", "people talk in a crowded room", "a train passes by", "water runs from a tap",
          "a door creaks open", "thunder rumbles far away", "a man speaks on a radio", "a cat meows twice",
          "footsteps on gravel", "wind blows through leaves", "a bell rings slowly", "an airplane flies overhead",
          "a woman laughs loudly", "glass breaks on the floor", "a clock ticks steadily", "waves crash on a beach",
          "a motorcycle revs its engine", "children play in a park", "a phone rings", "keys jingle in a pocket",
          "a siren wails in traffic", "frogs croak near a pond", "a drill whirs in a wall", "music plays softly",
          "a crowd cheers", "paper rustles on a desk"]
TEMPLATES = ["{s}", "{S} in the distance.", "Someone hears {s} nearby!", "{S}, then silence...",
             "loud sound: {s} while the wind blows"]
CANDIDATES = [
    "a dog barks", "", "A CAR ENGINE STARTS!!!", "birds birds birds birds chirp", "   ",
    "people are talking, talking; in a room?", "a train passes by in the distance", "water water water",
    "a door creaks open, then silence...", "Thunder rumbles.", "a man speaks on a radio nearby", "meow",
    "footsteps on gravel footsteps on gravel", "wind", "a bell rings slowly a bell rings slowly", None,
    "a woman laughs loudly while the wind blows", "!!!", "a clock ticks", "waves crash on a beach",
    "a motorcycle revs its engine in the distance.", "the the the the", "a phone rings nearby",
    "keys jingle", None, "frogs croak near a pond then silence", "a drill", "Music plays SOFTLY.",
    "a crowd cheers loudly", "paper paper rustles rustles",
]


def _references(scene: str) -> list[str]:
    return [template.format(s=scene, S=scene[0].upper() + scene[1:]) for template in TEMPLATES]


@pytest.fixture(scope="module")
def clotho(tmp_path_factory):
    """A Clotho evaluation split as it is downloaded (the CSV and ``evaluation/`` clips), built."""
    from fusion_datasets.builders import build
    from fusion_datasets.testing import media

    data = tmp_path_factory.mktemp("clotho-data")
    (data / "evaluation").mkdir()
    clip = media.write_audio(data / "tone.wav", media.music(1.0, 16000), 16000)
    with open(data / "clotho_captions_evaluation.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", *(f"caption_{n}" for n in range(1, 6))])
        for index, scene in enumerate(SCENES):
            shutil.copy(clip, data / "evaluation" / f"clip {index:02d}.wav")
            writer.writerow([f"clip {index:02d}.wav", *_references(scene)])
    output = tmp_path_factory.mktemp("clotho") / "clotho"
    build("clotho", data, output)
    return output


@pytest.fixture(scope="module")
def fense_models(tmp_path_factory):
    """A tiny random BERT as the sentence model, and an error detector over it that flags every caption."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("fense")
    words = sorted({word for scene in SCENES for word in simple_tokenize(" ".join(_references(scene))).split()})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128)
    sentence = folder / "sentence"
    BertModel(config).save_pretrained(sentence)
    tokenizer.save_pretrained(sentence)
    encoder = BertModel(config)
    classifier = torch.nn.Linear(32, 5)
    torch.nn.init.zeros_(classifier.weight)
    classifier.bias.data = torch.tensor([0.0, 0.0, 0.0, 0.0, 10.0])  # the error class: sigmoid(10) > 0.9
    state = {**{f"encoder.{key}": value for key, value in encoder.state_dict().items()},
             "clf.weight": classifier.weight.data, "clf.bias": classifier.bias.data}
    torch.save({"model_type": str(sentence), "num_classes": 5, "state_dict": state}, folder / "echecker.ckpt")
    return {"sentence": str(sentence), "checker": str(folder / "echecker.ckpt")}


def _predictions(path, captions):
    lines = [json.dumps({"id": f"clip {index:02d}", "caption": caption})
             for index, caption in enumerate(captions) if caption is not None]
    lines += [json.dumps({"id": "not a clip", "caption": "a dog"}), "{broken"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def evaluated(clotho, fense_models, tmp_path_factory, tiny_zoo):
    folder = tmp_path_factory.mktemp("captions-eval")
    predictions = _predictions(folder / "captions.jsonl", CANDIDATES)
    code = main(["eval", "captions", "--predictions", str(predictions), "--benchmark", str(clotho), "--output",
                 str(folder / "report"), "--fense-sentence-model", fense_models["sentence"], "--fense-checker",
                 fense_models["checker"], "--clap-model", str(tiny_zoo["clap"]), "--corenlp",
                 str(folder / "no-corenlp"), "--n-resamples", "200", "--device", "cpu"])
    assert code == 0
    report = json.loads((folder / "report" / "report.json").read_text())
    items = [json.loads(line) for line in (folder / "report" / "items.jsonl").read_text().splitlines()]
    return report, {row["metric"]: row for row in report["results"]}, items, folder / "report"


@pytest.fixture(scope="module")
def reference_figures():
    """pycocoevalcap 1.2's own pipeline: its PTB tokenizer, then its BLEU, METEOR, ROUGE-L and CIDEr-D."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = [f"clip {index:02d}" for index in range(len(SCENES))]
    tokenizer = PTBTokenizer()
    # pycocoevalcap's tokenizer drops a line that holds only spaces: as eval captions does, blank is empty
    res = tokenizer.tokenize({clip: [{"caption": (text or "").strip()}] for clip, text in zip(ids, CANDIDATES)})
    gts = tokenizer.tokenize({clip: [{"caption": text} for text in _references(scene)]
                              for clip, scene in zip(ids, SCENES)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    figures = {f"BLEU-{n}": value for n, value in enumerate(bleu, start=1)}
    figures["METEOR"], _ = Meteor().compute_score(gts, res)
    figures["ROUGE-L"], rouge = Rouge().compute_score(gts, res)
    figures["CIDEr-D"], cider = Cider().compute_score(gts, res)
    return figures, res, {"ROUGE-L": rouge, "CIDEr-D": cider}


def test_figures_equal_pycocoevalcap_on_the_same_tokens(evaluated, reference_figures):
    _, rows, items, _ = evaluated
    figures, tokenized, per_clip = reference_figures
    assert [item["tokens"] for item in items] == [tokenized[item["id"]][0] for item in items]
    for metric, value in figures.items():
        assert rows[metric]["value"] == pytest.approx(value, rel=1e-9, abs=1e-12), metric
        assert rows[metric]["protocol"].endswith("coco+ptb")
    for metric, values in per_clip.items():
        np.testing.assert_allclose([item[metric] for item in items], values, rtol=1e-9, atol=1e-12)
    assert 0 < rows["BLEU-4"]["value"] < rows["BLEU-1"]["value"] < 1 and rows["CIDEr-D"]["value"] > 0.5
    assert items[0]["CIDEr-D"] > 1 and items[1]["CIDEr-D"] == items[1]["ROUGE-L"] == 0  # exact vs empty


def test_missing_captions_are_empty_and_counted_and_what_cannot_run_is_left_out(evaluated, clotho):
    report, rows, items, _ = evaluated
    blank = sum(not (caption or "").strip() for caption in CANDIDATES)  # missing, empty or spaces
    assert rows["missing"]["value"] == blank == 4 and rows["missing"]["counts"] == "clips"
    assert rows["coverage"]["value"] == pytest.approx(100 * 26 / 30) and rows["coverage"]["n"] == 30
    assert items[15]["prediction"] is None and items[15]["tokens"] == "" and items[15]["CIDEr-D"] == 0
    left_out = {entry["metric"]: entry["reason"] for entry in report["left_out"]}
    assert set(left_out) == {"SPICE", "SPIDEr", "SPIDEr-FL"} and "stanford-corenlp-3.6.0.jar" in left_out["SPICE"]
    assert not set(left_out) & set(rows)  # never a figure for what did not run
    assert all("\n" not in reason for reason in left_out.values())
    folder = evaluated[3]
    assert "## Left out" in (folder / "report.md").read_text() and "- SPICE: " in (folder / "report.md").read_text()
    details = json.loads((folder / "details.json").read_text())
    assert details["unused_predictions"] == 1 and details["skipped_predictions"] == {"bad_prediction_line": 1}
    assert details["tokenizer"] == "ptb" and details["clips"] == 30
    # what changes a figure, and how much of the benchmark was scored (all 30 clips its metadata names)
    assert report["settings"]["n_resamples"] == 200 and report["settings"]["clap_model"]
    assert report["benchmarks"] == {"clotho": {"scored": 30, "size": 30, "partial": False}}


def test_fense_clap_and_intervals(evaluated, fense_models):
    from fusion_datasets.eval.classification import load_text_encoder

    _, rows, items, _ = evaluated
    # the detector flags every caption: FENSE is a tenth of SBERT-sim, clip by clip
    np.testing.assert_allclose([item["FENSE"] for item in items], [0.1 * item["SBERT-sim"] for item in items])
    encoder = load_text_encoder(fense_models["sentence"], "cpu")
    embeddings = encoder([CANDIDATES[2], *_references(SCENES[2])])
    assert items[2]["SBERT-sim"] == pytest.approx(float(np.mean(embeddings[1:] @ embeddings[0])), abs=1e-5)
    assert rows["CLAP-sim"]["n"] == 30 and -1 <= rows["CLAP-sim"]["value"] <= 1
    for metric in ("BLEU-4", "ROUGE-L", "CIDEr-D", "FENSE", "CLAP-sim"):
        low, high = rows[metric]["ci95"]
        assert low <= rows[metric]["value"] <= high and low < high, metric
    assert "ci95" not in rows["METEOR"]  # its corpus figure is the jar's aggregate, not a mean over clips
    assert rows["vocabulary"]["counts"] == "words" and rows["vocabulary"]["value"] > 30


def test_figures_do_not_depend_on_order_or_batches(fense_models):
    references = [_references(scene) for scene in SCENES]
    hypotheses = [(caption or "").strip() for caption in CANDIDATES]
    common = {"java": "no-such-java", "sentence_model": fense_models["sentence"],
              "error_detector": fense_models["checker"], "device": "cpu"}
    scores = score_captions(hypotheses, references, CaptionOptions(batch_size=32, **common))
    order = np.random.default_rng(1).permutation(len(SCENES))
    shuffled = score_captions([hypotheses[row] for row in order], [references[row] for row in order],
                              CaptionOptions(batch_size=1, **common))
    assert scores.tokenizer == shuffled.tokenizer == "simple"
    assert set(scores.left_out) == {"METEOR", "SPICE", "SPIDEr", "SPIDEr-FL"}
    assert "Java" in scores.left_out["METEOR"]
    figures, again = scores.values(), shuffled.values()
    assert set(figures) == {"FENSE", "CIDEr-D", "ROUGE-L", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "SBERT-sim"}
    for metric in ("CIDEr-D", "ROUGE-L", "BLEU-1", "BLEU-4"):
        assert again[metric] == figures[metric], metric  # exactly
    for metric in ("FENSE", "SBERT-sim"):
        assert again[metric] == pytest.approx(figures[metric], abs=1e-6), metric
    # CIDEr-D's document frequencies are the whole set's: a third of the clips scored alone differ
    alone = score_captions(hypotheses[:10], references[:10],
                           CaptionOptions(java="no-such-java", skip=frozenset({"fense"})))
    assert alone.per_clip["CIDEr-D"] != scores.per_clip["CIDEr-D"][:10]


def test_simple_tokenizer_follows_ptb(evaluated):
    _, _, items, _ = evaluated
    for item in items:
        if item["prediction"] and not re.search(r"[()]|[!?]{2}", item["prediction"]):  # PTB keeps "!!!", "-lrb-"
            assert simple_tokenize(item["prediction"]) == item["tokens"]


def test_two_commands_predict_then_score(clotho, tmp_path):
    """eval predict asks a captioning benchmark for captions with the captioning instruction (the served
    stub answers with the text it was asked), and eval captions scores that file."""

    def echo(request):
        content = request["messages"][-1]["content"]
        return " ".join(part.get("text", "") for part in content) if isinstance(content, list) else content

    predictions = tmp_path / "preds.jsonl"
    with StubChatServer(answer=echo) as server:
        assert main(["eval", "predict", "--model", "stub", "--backend", "server", "--base-url", server.base_url,
                     "--benchmark", str(clotho), "--output", str(predictions),
                     "--caption-instruction", "Caption the sound, briefly."]) == 0
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(lines) == 30 and {line["prediction"].strip() for line in lines} == {"Caption the sound, briefly."}
    assert main(["eval", "captions", "--predictions", str(predictions), "--benchmark", str(clotho),
                 "--output", str(tmp_path / "report"), "--java", "no-such-java", "--skip", "fense",
                 "--n-resamples", "10"]) == 0
    rows = {row["metric"]: row for row in json.loads((tmp_path / "report" / "report.json").read_text())["results"]}
    assert rows["coverage"]["value"] == 100.0 and rows["vocabulary"]["value"] == 4


def test_user_mistakes_are_one_paragraph(clotho, tmp_path, capsys):
    unrelated = _predictions(tmp_path / "other.jsonl", [])
    assert main(["eval", "captions", "--predictions", str(unrelated), "--benchmark", str(clotho),
                 "--output", str(tmp_path / "report"), "--java", "no-such-java", "--skip", "fense"]) != 0
    error = capsys.readouterr().err
    assert "none of the 30 clips" in error and "Traceback" not in error
