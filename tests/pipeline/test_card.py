"""The dataset card of a real tiny run: YAML metadata, counts, models, prompts, plot, licenses, no token."""

import hashlib
import json
import shutil
from typing import ClassVar

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard

from fusion_datasets.cli import main
from fusion_datasets.experts import VideoDescriber
from fusion_datasets.pipeline.card import COUNT_LABELS, PLOT, count_label, count_rows, render_card, size_category
from fusion_datasets.pipeline.config import load_config, load_run_config
from fusion_datasets.prompts import read_prompt
from fusion_datasets.registry import register
from fusion_datasets.testing import media

TOKEN = "hf_" + "Zq7" * 12  # shaped like a user access token


@pytest.fixture(scope="module")
def run_output(tmp_path_factory, tiny_zoo):
    """One tiny run over 3 clips (one corrupt) from a Parquet input with a per-clip ``license`` column."""
    folder = tmp_path_factory.mktemp("clips")
    media.write_audio(folder / "speech.wav", media.speech(2.0, 16000), 16000)
    media.write_audio(folder / "music.wav", media.music(2.0, 22050, channels=2), 22050)
    media.write_video(folder / "music.mp4", 2.0, fps=5, size=(64, 48))
    (folder / "corrupt.wav").write_bytes(b"not audio at all" * 64)
    datasets.Dataset.from_dict({
        "id": ["speech", "music", "corrupt"],
        "audio": [str(folder / f"{name}.wav") for name in ("speech", "music", "corrupt")],
        "video": [None, str(folder / "music.mp4"), None],
        "source": ["synthetic"] * 3,
        "license": ["cc-by-4.0", "cc-by-4.0", "cc0-1.0"],
    }).to_parquet(str(folder / "clips.parquet"))
    output = tmp_path_factory.mktemp("run") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", TOKEN)  # a logged-in user: the token must not reach the card
        assert main(["run", "tiny", "--input", str(folder / "clips.parquet"), "--output", str(output),
                     "--set", "output.shard_size=2", "--set", "experts.separation.enabled=false",
                     "--set", "output.license=cc-by-4.0",
                     "--set", "output.pretty_name=Tiny FusionAudio"]) == 0
    return output


@pytest.fixture
def copy_of_output(run_output, tmp_path):
    return shutil.copytree(run_output, tmp_path / "out")


def _table(text: str, section: str) -> dict[str, str]:
    """The first two cells of each row of the first table under ``## section``."""
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in body.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): cells[1].strip() for cells in rows[1:]}  # rows[0] is the header


def test_card_metadata_is_valid_for_the_hub_and_the_folder_still_loads(run_output):
    card = DatasetCard.load(run_output / "README.md")
    # the exact files of the committed state, not globs that would also match a redo's next generation
    parts = sorted(path.name for path in (run_output / "data" / "cues").glob("part-*.parquet"))
    assert [(c["config_name"], c["data_files"]) for c in card.data.configs] == [
        (name, [{"split": "train", "path": [f"data/{name}/{part}" for part in parts]}])
        for name in ("cues", "captions", "qa")]
    assert card.data.license == "cc-by-4.0"
    assert card.data.size_categories == ["n<1K"]
    assert card.data.language == ["en"] and card.data.pretty_name == "Tiny FusionAudio"
    assert "audio-question-answering" in card.data.tags
    assert card.text.lstrip().startswith("# Tiny FusionAudio")
    captions = datasets.load_dataset(str(run_output), "captions", split="train")
    assert sorted(captions["id"]) == ["music", "speech"]
    assert datasets.load_dataset(str(run_output), "qa", split="train").num_rows > 0


def test_counts_on_the_card_equal_stats_json(run_output):
    stats = json.loads((run_output / "stats.json").read_text())
    text = (run_output / "README.md").read_text()
    counts = _table(text, "Counts")
    for key in ("clips", "clips_with_errors", "captioned", "uncertain", "clap_scored", "removed_by_filter",
                "filter_removal_rate", "captions", "qa_pairs", "parts", "complete"):
        assert counts[count_label(key)] == str(stats[key]), key
    for stage, usage in stats["llm_usage"].items():  # nested counters too
        for name, value in usage.items():
            assert counts[count_label(f"llm_usage.{stage}.{name}")] == str(value)
    assert counts["LLM usage: fusion prompt_tokens"] == str(stats["llm_usage"]["fusion"]["prompt_tokens"])
    assert (stats["clips"], stats["captions"], stats["errors_by_stage"]) == (3, 2, {"decode": 1})
    assert "| decode | 1 |" in text
    assert _table(text, "How to load")["`qa`"] == str(stats["qa_pairs"])


def test_every_count_is_named_in_words(run_output):
    counts = _table((run_output / "README.md").read_text(), "Counts")
    assert counts["input folders or remote files that could not be read"] == "0" and "input_unreadable" not in counts
    labels = [label for label, _ in count_rows(json.loads((run_output / "stats.json").read_text()))]
    derived = {"filter removal rate, percent", "QA pairs per kept caption"}
    assert set(labels) <= set(counts)
    assert {label.split(":")[0] for label in labels} <= {*COUNT_LABELS.values(), *derived}  # no raw key


def test_the_load_snippet_names_the_output_folder_or_the_hub_dataset(run_output, copy_of_output):
    snippet = 'load_dataset("out", "captions", split="train")  # this folder, from the folder that holds it'
    assert snippet in (run_output / "README.md").read_text() and run_output.name == "out"
    config = yaml.safe_load((copy_of_output / "config.yaml").read_text())
    config["output"]["path"] = "hf://datasets/me/tiny-captions"  # a run that published as it went
    (copy_of_output / "config.yaml").write_text(yaml.safe_dump(config))
    text = render_card(copy_of_output, load_run_config(copy_of_output)).read_text()
    assert 'captions = load_dataset("me/tiny-captions", "captions", split="train")\n' in text


def test_card_names_every_model_and_prompt_hash_and_the_thresholds(run_output, tiny_zoo):
    text = (run_output / "README.md").read_text()
    cues = [row for path in sorted((run_output / "data" / "cues").glob("*.parquet"))
            for row in pq.read_table(path).to_pylist()]
    provenance = {entry["stage"]: entry for row in cues for entry in row["provenance"] or []}
    assert set(provenance) == {"fusion", "qa"}
    for entry in provenance.values():  # the hashes the rows carry are the ones on the card
        assert f"`{entry['model']}`" in text and f"`{entry['prompt']}` (`{entry['prompt_sha256']}`)" in text
    for name in ("sound_v1", "music_v1", "visual_v1"):
        assert f"`{name}` (`{hashlib.sha256(read_prompt(name).encode()).hexdigest()}`)" in text
    for model in ("whisper", "ast-audioset", "qwen2-audio", "qwen2.5-vl", "clap"):
        assert f"`local:{model}`" in text and str(tiny_zoo.root) not in text  # a stable name, not a machine path
    assert "CLAP filter threshold: -1.0" in text and "Music gate threshold: 0.5" in text
    assert "LLM backend: `transformers`" in text and "arXiv:2506.01111" in text


def test_the_plot_is_a_png_embedded_with_a_relative_link(run_output):
    png = (run_output / PLOT).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    text = (run_output / "README.md").read_text()
    assert f"]({PLOT})" in text
    assert _table(text, "Caption lengths and modality coverage")["video"] == "1"  # one clip has a video


def test_per_clip_licenses_are_counted(run_output, copy_of_output):
    licenses = _table((run_output / "README.md").read_text(), "Licenses")
    assert licenses == {"cc-by-4.0": "2", "cc0-1.0": "1"}

    for path in (copy_of_output / "data").rglob("*.parquet"):  # the same run, without a license column
        table = pq.read_table(path)
        if "license" in table.column_names:
            pq.write_table(table.drop_columns(["license"]), path)
    text = render_card(copy_of_output, load_run_config(copy_of_output)).read_text()
    assert _table(text, "Licenses") == {} and "The input had no `license` column" in text


def test_no_token_reaches_the_card(run_output, copy_of_output, monkeypatch):
    assert TOKEN not in (run_output / "README.md").read_text()
    config = yaml.safe_load((copy_of_output / "config.yaml").read_text())
    config["output"]["pretty_name"] = f"pasted {TOKEN} by mistake"
    (copy_of_output / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    text = render_card(copy_of_output, load_run_config(copy_of_output)).read_text()
    assert TOKEN not in text and "pasted *** by mistake" in text


def test_cli_card_re_renders_a_deleted_card(copy_of_output, capsys):
    (copy_of_output / "README.md").unlink()
    (copy_of_output / PLOT).unlink()
    assert main(["card", str(copy_of_output)]) == 0
    assert capsys.readouterr().out.strip() == str(copy_of_output / "README.md")
    assert (copy_of_output / PLOT).read_bytes().startswith(b"\x89PNG")
    assert DatasetCard.load(copy_of_output / "README.md").data.license == "cc-by-4.0"
    assert datasets.load_dataset(str(copy_of_output), "cues", split="train").num_rows == 3


def test_a_hub_input_is_the_source_dataset(copy_of_output):
    config = yaml.safe_load((copy_of_output / "config.yaml").read_text())
    config["input"]["path"] = "some-org/field-recordings"
    (copy_of_output / "config.yaml").write_text(yaml.safe_dump(config))
    card = DatasetCard.load(render_card(copy_of_output, load_run_config(copy_of_output)))
    assert card.data.source_datasets == ["some-org/field-recordings"]
    assert "(https://huggingface.co/datasets/some-org/field-recordings)" in card.text


def test_a_folder_that_is_not_a_run_output_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("name: tiny\n")
    with pytest.raises(FileNotFoundError, match="stats.json is missing"):
        render_card(tmp_path, load_run_config(tmp_path))


@pytest.mark.parametrize(("rows", "bucket"), [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"),
                                              (1_200_000, "1M<n<10M"), (10**13, "n>1T")])
def test_size_category_uses_the_hubs_buckets(rows, bucket):
    assert size_category(rows) == bucket


class SceneDescriber(VideoDescriber):
    """A visual expert of another kind: the card counts its modality under its own name."""

    coverage: ClassVar[dict[str, str]] = {"scenes": "video_caption"}


register("visual", "scenes")(SceneDescriber)


def test_modality_coverage_comes_from_the_runs_experts(copy_of_output):
    config = load_config(str(copy_of_output / "config.yaml"), ["experts.visual.type=scenes"])
    coverage = _table(render_card(copy_of_output, config).read_text(), "Caption lengths and modality coverage")
    assert coverage["scenes"] == "1" and "video" not in coverage and "speech" in coverage
