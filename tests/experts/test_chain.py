"""The protocol every expert shares: cache reuse, several processes, chaining, recorded failures."""

import pytest
from datasets.fingerprint import Hasher
from experts.conftest import clips_dataset, run_map

from fusion_datasets import runtime
from fusion_datasets.experts.chain import ExpertChain
from fusion_datasets.experts.separation import HTDemucsSeparator
from fusion_datasets.experts.tagging import ASTAudioTagger
from fusion_datasets.testing.dummies import FailingRows


@pytest.fixture
def tagger(tiny_zoo):
    return ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), top_k=5)


def test_fingerprint_comes_from_the_config(tiny_zoo, tagger):
    same = ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), top_k=5)
    other = ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), top_k=6)
    assert Hasher.hash(tagger) == Hasher.hash(same) != Hasher.hash(other)
    runtime.cached_model(("x",), object)  # a loaded model elsewhere in the process changes nothing
    assert Hasher.hash(tagger) == Hasher.hash(same)


def test_rerun_hits_the_datasets_cache_without_touching_the_model(tmp_path, tiny_zoo, tagger, good_clips, monkeypatch):
    ds = clips_dataset(good_clips, tmp_path)
    first = run_map(ds, tagger)
    runtime.clear_model_cache()

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(runtime, "cached_model", refuse)
    again = run_map(ds, ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), top_k=5))
    assert again.cache_files == first.cache_files
    assert again.to_list() == first.to_list()


def test_two_processes_give_the_same_rows_as_one(tmp_path, tagger, good_clips, bad_clips):
    ds = clips_dataset({**good_clips, "corrupt": bad_clips["corrupt"], "surround": bad_clips["surround"]}, tmp_path)
    one = run_map(ds, tagger, batch_size=2, load_from_cache_file=False)
    two = run_map(ds, tagger, batch_size=2, num_proc=2, load_from_cache_file=False)
    assert two.num_rows == ds.num_rows
    assert two["id"] == ds["id"]
    for row_one, row_two in zip(one, two):
        assert row_one["errors"] == row_two["errors"]
        assert row_one["music_score"] == pytest.approx(row_two["music_score"], abs=1e-5)


def test_chain_equals_the_experts_run_one_after_the_other(tmp_path, tiny_zoo, tagger, good_clips, bad_clips):
    separator = HTDemucsSeparator(model="htdemucs", repo=str(tiny_zoo["htdemucs"]), output_tracks=False)
    paths = {"music": good_clips["music"], "speech": good_clips["speech"], "missing": bad_clips["missing"]}
    ds = clips_dataset(paths, tmp_path)
    chain = ExpertChain([separator, tagger])
    chained = run_map(ds, chain)
    stepwise = run_map(run_map(ds, separator), tagger)
    assert chained.column_names == ["id", "audio", "audio_tags", "music_score", "errors"]
    assert chained.to_list() == stepwise.to_list()
    assert [len(row["errors"]) for row in chained] == [0, 0, 1]  # the decode error is recorded once


def test_a_failing_row_is_recorded_and_the_others_are_kept():
    expert = FailingRows(failing=(1,))
    outputs = expert({"id": ["a", "b", "c"], "errors": [[{"stage": "decode", "message": "x"}], [], None]})
    assert outputs["dummy_value"] == [0, None, 20]
    assert outputs["errors"] == [
        [{"stage": "decode", "message": "x"}],
        [{"stage": "failing_rows", "message": "RuntimeError: cannot handle row 1"}],
        [],
    ]


def test_device_comes_from_the_rank_and_the_config():
    assert runtime.resolve_device("cpu", rank=3) == "cpu"
    assert runtime.resolve_device(None, rank=1) == ("cuda:1" if _gpus() > 1 else "cuda:0" if _gpus() else "cpu")
    import torch

    assert runtime.resolve_dtype("auto", "cpu") == torch.float32
    assert runtime.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be"):
        runtime.resolve_dtype("float8", "cpu")


def _gpus():
    import torch

    return torch.cuda.device_count()


@pytest.mark.gpu
def test_gpu_rank_picks_its_device_and_half_precision():
    import torch

    count = torch.cuda.device_count()
    assert runtime.resolve_device(None, rank=count + 1) == f"cuda:{1 % count}"
    assert runtime.resolve_dtype("auto", "cuda:0") in (torch.bfloat16, torch.float16)
