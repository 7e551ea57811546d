"""train-clap on WebDataset shards: a real tiny run exported with ``export --format webdataset``, read back as a
training source (local, and ``hf://`` through the Hub-files test double), against the run's own Parquet."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from transformers import ClapProcessor

from fusion_datasets.cli import main
from fusion_datasets.errors import UserError
from fusion_datasets.export import export
from fusion_datasets.media import decode_audio, resample
from fusion_datasets.testing.hub import local_hub_files
from fusion_datasets.testing.runs import write_segmented_run
from fusion_datasets.train import load_train_config, train_clap
from fusion_datasets.train.data import CaptionedClips, EpochOrder, TrainingClips, load_table, training_table

FLAC_STEP = 2.0 / 2**16  # one step of 16-bit FLAC


@pytest.fixture(scope="module")
def run_output(tmp_path_factory, tiny_zoo) -> Path:
    """A tiny run (tagger, fusion, QA) over two clips and a 5 s file cut into two segments: 4 captions, 2 parts."""
    return write_segmented_run(tmp_path_factory.mktemp("clips"), tmp_path_factory.mktemp("run") / "out")


@pytest.fixture(scope="module")
def shards(run_output, tmp_path_factory) -> Path:
    """The run as LAION-CLAP's shards: ``train/0.tar`` and ``train/1.tar`` of 2 samples each, ``sizes.json``."""
    folder = tmp_path_factory.mktemp("wds") / "wds"
    export(run_output, "webdataset", folder, shard_samples=2)
    assert json.loads((folder / "train" / "sizes.json").read_text()) == {"0.tar": 2, "1.tar": 2}
    return folder


@pytest.fixture(scope="module")
def bench(run_output, tmp_path_factory) -> Path:
    """The run's captions as a retrieval benchmark (one caption per clip): the training runs' ``--eval``."""
    folder = tmp_path_factory.mktemp("bench") / "bench"
    table = load_table(str(run_output), "train").select_columns(["id", "audio", "caption"])
    table.map(lambda row: {"captions": [row["caption"]]}).save_to_disk(str(folder))
    return folder


def _clips(spec: str, tiny_zoo, key: int = 0) -> CaptionedClips:
    extractor = ClapProcessor.from_pretrained(str(tiny_zoo["clap-trainable"])).feature_extractor
    return CaptionedClips(training_table(spec, "train"), spec, key, extractor, fused=False, seed=0)


def _items_by_id(clips: CaptionedClips) -> dict[str, dict]:
    return {clips.table[index]["id"]: clips[index] for index in range(len(clips))}


def test_shards_give_the_model_the_captions_and_audio_of_the_parquet(run_output, shards, tiny_zoo):
    parquet, sharded = _clips(str(run_output), tiny_zoo), _clips(str(shards), tiny_zoo)
    assert sharded.blocks == [2, 2] and parquet.blocks == [4]
    expected, got = _items_by_id(parquet), _items_by_id(sharded)
    assert sorted(got) == sorted(expected) == ["long@0-2.5", "long@2.5-5", "music", "speech"]
    for clip_id, item in got.items():
        assert item["caption"] == expected[clip_id]["caption"] and item["caption"].strip()
        assert item["is_longer"] is expected[clip_id]["is_longer"] is False
        # log-mel features (dB) of the same 48 kHz audio: FLAC's 16-bit steps (-96 dB) show in near-silent bins only
        features, reference = item["input_features"], expected[clip_id]["input_features"]
        heard = reference > -60
        assert features.shape == reference.shape and heard.mean() > 0.3
        assert np.abs(features - reference)[heard].max() < 0.5, clip_id
    originals = {row["id"]: row for row in parquet.table}
    for index in range(len(sharded)):  # the waveforms themselves, to FLAC precision
        row = sharded.table[index]
        original = originals[row["id"]]
        reference = resample(decode_audio(original["audio"], original.get("start"), original.get("end")), 48000)[0]
        np.testing.assert_allclose(decode_audio(row["audio"]).samples[0], reference, atol=FLAC_STEP)


def test_a_list_of_texts_gives_one_of_them_per_epoch_by_the_seeded_rule(run_output, tmp_path, tiny_zoo):
    export(run_output, "webdataset", tmp_path / "qa", with_qa=True)
    clips = _clips(str(tmp_path / "qa"), tiny_zoo)
    chosen: dict[int, list[str]] = {index: [] for index in range(len(clips))}
    for epoch in (0, 1, 2, 0):
        clips.set_epoch(epoch)
        for index, picks in chosen.items():
            texts = clips.table[index]["captions"]
            assert isinstance(texts, list) and len(texts) > 1
            picks.append(clips[index]["caption"])
            assert picks[-1] in texts
    assert all(picks[0] == picks[3] for picks in chosen.values())  # the same epoch, the same pick
    assert any(len(set(picks)) > 1 for picks in chosen.values())


def test_each_epoch_reads_shard_by_shard_in_a_seeded_order_whatever_the_workers(run_output, shards, tiny_zoo):
    """Shard rows 0-1 (``0.tar``) and 2-3 (``1.tar``) mixed with the Parquet's rows 4-7."""
    from torch.utils.data import DataLoader

    clips = TrainingClips([_clips(str(shards), tiny_zoo), _clips(str(run_output), tiny_zoo, key=1)])
    order = EpochOrder(clips, seed=0)
    epochs = []
    for epoch in (0, 1, 2, 0):
        order.set_epoch(epoch)
        epochs.append(list(order))
    assert epochs[0] == epochs[3] and len({tuple(rows) for rows in epochs}) == 3
    for rows in epochs:
        assert sorted(rows) == list(range(8))
        from_shards = [row for row in rows if row < 4]
        assert {frozenset(from_shards[:2]), frozenset(from_shards[2:])} == {frozenset({0, 1}), frozenset({2, 3})}

    def captions(workers: int) -> list[list[str]]:
        loader = DataLoader(clips, batch_size=2, sampler=order, num_workers=workers,
                            collate_fn=lambda items: [item["caption"] for item in items])
        return list(loader)

    order.set_epoch(1)
    in_process = captions(0)  # opens shards here, before the workers fork
    assert captions(2) == in_process and len(in_process) == 4


def _train(tiny_zoo, bench: Path, output: Path, train: list[str], *overrides: str):
    """The tiny trainable CLAP, evaluated on ``bench``; micro-batches of 1, 2 per step."""
    base = ("learning_rate=1e-3", "batch_size=2", "per_device_batch_size=1", "epochs=2", "warmup_ratio=0.1",
            "weight_decay=0.0", "num_workers=0", "eval_resamples=0", "save_every_steps=1000",
            "eval_before_training=false")
    config = load_train_config("pretrain", [*base, *overrides], model=str(tiny_zoo["clap-trainable"]),
                               train=train, eval=str(bench), output=str(output))
    return train_clap(config)


def test_training_on_shards_and_parquet_resumes_to_the_uninterrupted_weights(tmp_path, tiny_zoo, run_output, shards,
                                                                            bench):
    """8 rows (4 from shards, 4 from the Parquet) in micro-batches of 1: 4 steps an epoch. Stopped at step 3, six
    micro-batches into epoch 0, the rerun skips those six and ends with the uninterrupted run's weights."""
    train = [str(shards), str(run_output)]
    straight = _train(tiny_zoo, bench, tmp_path / "straight", train)
    stats = json.loads((tmp_path / "straight" / "train_stats.json").read_text())
    assert (straight.steps, straight.skipped_clips, stats["clips_trained"]) == (8, 0, 16)

    output = tmp_path / "resumed"
    assert _train(tiny_zoo, bench, output, train, "max_steps=3", "save_every_steps=1").steps == 3
    resumed = _train(tiny_zoo, bench, output, train, "save_every_steps=1")
    assert (resumed.resumed_from_step, resumed.steps) == (3, 8)
    expected = load_file(str(tmp_path / "straight" / "checkpoints" / "step-00000008" / "model.safetensors"))
    got = load_file(str(output / "checkpoints" / "step-00000008" / "model.safetensors"))
    initial = load_file(str(tiny_zoo["clap-trainable"] / "model.safetensors"))
    assert sorted(got) == sorted(expected)
    for name, weights in expected.items():
        np.testing.assert_allclose(got[name], weights, atol=1e-6, err_msg=name)
    assert any(not np.allclose(initial[name], weights) for name, weights in expected.items() if name in initial)


def _tar(path: Path, samples: dict[str, dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, files in samples.items():
            for suffix, data in files.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_bad_samples_are_skipped_and_counted(tmp_path, tiny_zoo, shards, bench):
    """A third shard: one good sample, an undecodable FLAC, a JSON without text, and one sample fewer than its
    ``sizes.json`` entry says."""
    bad = tmp_path / "bad"
    shutil.copytree(shards, bad)
    with tarfile.open(bad / "train" / "0.tar") as tar:
        flac = next(tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".flac"))
    _tar(bad / "train" / "2.tar", {
        "copy": {"flac": flac, "json": json.dumps({"text": "a copied clip"}).encode()},
        "corrupt": {"flac": b"not a flac file" * 100, "json": json.dumps({"text": "a broken clip"}).encode()},
        "textless": {"flac": flac, "json": json.dumps({"tag": ["Speech"]}).encode()},
    })
    sizes = json.loads((bad / "train" / "sizes.json").read_text())
    (bad / "train" / "sizes.json").write_text(json.dumps({**sizes, "2.tar": 4}))

    result = _train(tiny_zoo, bench, tmp_path / "out", [str(bad)], "epochs=1", "batch_size=8",
                    "per_device_batch_size=8")
    stats = json.loads((tmp_path / "out" / "train_stats.json").read_text())
    assert (result.steps, result.skipped_clips, stats["dropped_undecodable"], stats["clips_trained"]) == (1, 3, 3, 5)
    messages = {item["id"]: item["message"] for item in stats["undecodable"]}
    assert set(messages) == {"corrupt", "textless", None}
    assert "cannot decode audio" in messages["corrupt"] and "no caption" in messages["textless"]
    assert messages[None] == "shard 2.tar has 3 samples, no sample 3"


def test_a_folder_that_is_neither_a_dataset_nor_shards_is_a_user_error(tmp_path, tiny_zoo, capsys):
    empty, tars = tmp_path / "empty", tmp_path / "tars"
    empty.mkdir()
    (tars / "train").mkdir(parents=True)
    _tar(tars / "train" / "0.tar", {"a": {"flac": b"", "json": b"{}"}})
    with pytest.raises(UserError, match="holds WebDataset shards but no sizes.json"):
        training_table(str(tars), "train")
    argv = ["train-clap", "--model", str(tiny_zoo["clap-trainable"]), "--train", str(empty), "--eval", str(empty),
            "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("fusion-datasets:")]
    assert f"{empty} is neither a dataset nor WebDataset shards" in line and "--format webdataset" in line


def test_hf_paths_read_the_shards_through_fsspec(tmp_path, shards):
    """Through :func:`local_hub_files`, a test double for the Hub's files: ``hf://`` resolves through fsspec's
    ``hf`` protocol as with huggingface_hub's HfFileSystem, which needs the network and is not exercised here."""
    import fsspec
    from huggingface_hub import HfFileSystem

    remote = tmp_path / "hub"
    shutil.copytree(shards, remote / "datasets" / "org" / "clips" / "wds")
    local = training_table(str(shards), "train")
    with local_hub_files(remote):
        table = training_table("hf://datasets/org/clips/wds", "train")
        assert [table[index] for index in range(4)] == [local[index] for index in range(4)]
        assert table.shard_sizes == [2, 2]
    assert fsspec.get_filesystem_class("hf") is HfFileSystem
