"""Exports of a real tiny run, read back with each consumer's own library (webdataset, lhotse) or checked
against the format's schema (WavCaps, messages, FusionAudio); every caption and every waveform is compared
with the run's output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from fusion_datasets.cli import main
from fusion_datasets.clip_audio import write_parquet
from fusion_datasets.export import export
from fusion_datasets.export.base import sample_key
from fusion_datasets.export.messages import CAPTION_PROMPTS, caption_prompt
from fusion_datasets.media import Waveform, decode_audio, resample
from fusion_datasets.testing.runs import write_segmented_run

FLAC_STEP = 2.0 / 2**16  # one step of 16-bit FLAC
TOKEN = "hf_" + "Xp4" * 12


@pytest.fixture(scope="module")
def run_output(tmp_path_factory, tiny_zoo):
    """A tiny run (tagger, fusion, QA) over a mono and a stereo clip and a 5 s file cut into two segments."""
    return write_segmented_run(tmp_path_factory.mktemp("clips"), tmp_path_factory.mktemp("run") / "out")


def captions_of(output: Path) -> dict[str, dict]:
    rows = datasets.load_dataset(str(output), "captions", split="train")
    return {row["id"]: row for row in rows.cast_column("audio", datasets.Audio(decode=False))}


def qa_of(output: Path) -> dict[str, list[dict]]:
    pairs: dict[str, list[dict]] = {}
    for pair in datasets.load_dataset(str(output), "qa", split="train"):
        pairs.setdefault(pair["clip_id"], []).append(pair)
    return pairs


def clip_samples(row: dict, rate: int) -> np.ndarray:
    return resample(decode_audio(row["audio"]["path"], row.get("start"), row.get("end")), rate)[0]


def test_the_captions_audio_is_typed_and_decodes_without_a_cast(run_output):
    captions = datasets.load_dataset(str(run_output), "captions", split="train")
    assert isinstance(captions.features["audio"], datasets.Audio)
    row = next(row for row in captions if row["id"] == "speech")
    assert row["audio"].get_all_samples().data.shape[-1] == 24000
    readme = (run_output / "README.md").read_text()
    assert "start` and `end` mark the segment" in readme and "reference to the clip's file" in readme


def test_webdataset_shards_read_back_with_webdataset(run_output, tmp_path, monkeypatch):
    import webdataset

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    summary = export(run_output, "webdataset", tmp_path / "wds", shard_samples=2, with_qa=True)
    captions, pairs = captions_of(run_output), qa_of(run_output)
    assert summary.written["clips"] == len(captions) == 4 and summary.skipped == {}
    sizes = json.loads((tmp_path / "wds" / "train" / "sizes.json").read_text())
    tars = sorted((tmp_path / "wds" / "train").glob("*.tar"))
    assert sorted(sizes) == sorted(path.name for path in tars) and sum(sizes.values()) == 4
    assert max(sizes.values()) <= 2
    seen = set()
    for sample in webdataset.WebDataset([str(path) for path in tars], shardshuffle=False):
        text = json.loads(sample["json"])
        row = captions[text["id"]]
        seen.add(text["id"])
        assert text["text"] == [row["caption"], *(f"{p['question']} {p['answer']}" for p in pairs[text["id"]])]
        assert text["tag"] == [tag["label"] for tag in row["audio_tags"]]
        decoded = decode_audio({"bytes": sample["flac"], "path": None})
        assert decoded.sampling_rate == 48000 and decoded.samples.shape[0] == 1
        np.testing.assert_allclose(decoded.samples[0], clip_samples(row, 48000), atol=FLAC_STEP)
    assert seen == set(captions)
    assert not any(TOKEN.encode() in path.read_bytes() for path in (tmp_path / "wds").rglob("*") if path.is_file())


def test_lhotse_manifests_load_with_lhotse(run_output, tmp_path):
    from lhotse import CutSet, RecordingSet, SupervisionSet

    export(run_output, "lhotse", tmp_path / "lhotse")
    captions = captions_of(run_output)
    cuts = CutSet.from_file(tmp_path / "lhotse" / "cuts.jsonl.gz")
    assert len(RecordingSet.from_file(tmp_path / "lhotse" / "recordings.jsonl.gz")) == len(captions)
    assert len(SupervisionSet.from_file(tmp_path / "lhotse" / "supervisions.jsonl.gz")) == len(captions)
    for cut in cuts:
        (supervision,) = cut.supervisions
        row = captions[supervision.custom["clip_id"]]
        assert supervision.text == row["caption"]
        loaded = cut.load_audio()[0]
        expected = resample(decode_audio(row["audio"]["path"], row.get("start"), row.get("end")),
                            cut.sampling_rate)[0]
        assert abs(len(loaded) - len(expected)) <= 1  # lhotse rounds a segment's frames
        n = min(len(loaded), len(expected))
        np.testing.assert_allclose(loaded[:n], expected[:n], atol=1e-4)
    assert {cut.supervisions[0].custom["clip_id"] for cut in cuts} == set(captions)


def test_wavcaps_messages_and_fusionaudio_follow_their_schemas(run_output, tmp_path):
    captions, pairs = captions_of(run_output), qa_of(run_output)
    export(run_output, "wavcaps", tmp_path / "wavcaps")
    wavcaps = json.loads((tmp_path / "wavcaps" / "wavcaps.json").read_text())
    assert wavcaps["num_captions_per_audio"] == 1 and len(wavcaps["data"]) == len(captions)
    for item in wavcaps["data"]:
        assert set(item) == {"id", "audio", "caption", "duration"}
        assert item["caption"] == captions[item["id"]]["caption"]
        row = captions[item["id"]]
        decoded = decode_audio(item["audio"])  # a whole file as it is, a segment as a FLAC of it
        assert os.path.isabs(item["audio"]) and abs(decoded.duration - item["duration"]) < 0.01
        np.testing.assert_allclose(resample(decoded, 16000)[0], clip_samples(row, 16000), atol=FLAC_STEP * 2)

    export(run_output, "messages", tmp_path / "messages")
    lines = [json.loads(line) for line in (tmp_path / "messages" / "messages.jsonl").read_text().splitlines()]
    assert len(lines) == len(captions) + sum(map(len, pairs.values()))
    by_audio: dict[str, list] = {}
    for line in lines:
        assert [message["role"] for message in line["messages"]] == ["user", "assistant"] and len(line["audios"]) == 1
        by_audio.setdefault(line["audios"][0], []).append([message["content"] for message in line["messages"]])
    assert len(by_audio) == len(captions)
    for clip, row in captions.items():  # a whole file is named as it is, a segment by a FLAC of it
        written = str(tmp_path / "messages" / "audio" / f"{sample_key(clip)}.flac")
        audio = written if row["start"] is not None else row["audio"]["path"]
        texts = by_audio[audio]
        assert texts == [["<audio>" + caption_prompt(clip), row["caption"]],
                         *(["<audio>" + pair["question"], pair["answer"]] for pair in pairs[clip])]
        np.testing.assert_allclose(resample(decode_audio(audio), 16000)[0], clip_samples(captions[clip], 16000),
                                   atol=FLAC_STEP * 2)
    assert {caption_prompt(f"clip-{index}") for index in range(40)} == set(CAPTION_PROMPTS)

    export(run_output, "fusionaudio", tmp_path / "fusionaudio", audio_root=str(tmp_path))
    rows = json.loads((tmp_path / "fusionaudio" / "fusionaudio.json").read_text())
    assert len(rows) == len(lines)
    assert all(set(row) == {"audio_id", "instruction", "input", "dataset", "task", "output", "id"} for row in rows)
    segment = next(row for row in rows if "@" in row["id"])
    assert segment["audio_id"].startswith("fusionaudio/audio/")  # its own FLAC, relative to the audio root


def test_an_export_resumes_and_follows_a_redone_part(run_output, tmp_path, capsys):
    target = tmp_path / "messages"
    assert main(["export", str(run_output), "--format", "messages", "--output", str(target)]) == 0
    assert "messages export of 2 parts" in capsys.readouterr().out
    state = json.loads((target / "export.json").read_text())
    assert state["complete"] and len(state["parts"]) == 2
    before = {path: path.stat().st_mtime_ns for path in (target / ".parts").iterdir()}
    export(run_output, "messages", target)
    assert {path: path.stat().st_mtime_ns for path in (target / ".parts").iterdir()} == before  # nothing redone

    with pytest.raises(Exception, match="holds a messages export"):
        export(run_output, "wavcaps", target)
    assert main(["export", str(run_output), "--format", "wavcaps", "--output", str(target)]) == 2
    assert "export into another folder" in capsys.readouterr().err


def test_an_unreadable_clip_is_skipped_and_counted(run_output, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(run_output, copy)
    for path in (copy / "data" / "captions").glob("*.parquet"):
        rows = datasets.Dataset.from_parquet(str(path)).cast_column("audio", datasets.Audio(decode=False))
        gone = rows.map(lambda row: {"audio": {"bytes": None, "path": str(tmp_path / "gone.wav")}}
                        if row["id"] == "speech" else {}, features=rows.features)
        write_parquet(gone, path)
    summary = export(copy, "wavcaps", tmp_path / "wavcaps")
    assert summary.skipped == {"audio_unreadable": 1} and summary.written["clips"] == 3
    data = json.loads((tmp_path / "wavcaps" / "wavcaps.json").read_text())["data"]
    assert "speech" not in {item["id"] for item in data} and len(data) == 3


def test_waveform_helper_is_flac_precise():
    samples = np.linspace(-0.5, 0.5, 4800, dtype=np.float32)[None]
    from fusion_datasets.clip_audio import encode_flac

    decoded = decode_audio({"bytes": encode_flac(samples, 48000), "path": None})
    assert isinstance(decoded, Waveform)
    np.testing.assert_allclose(decoded.samples, samples, atol=FLAC_STEP)
