import pickle

import datasets
import pytest
from experts.conftest import run_map

from fusion_datasets.clap.embed import clap_scores, load_clap
from fusion_datasets.clap.filter import HISTOGRAM_EDGES, ClapFilterConfig, ClapSimilarityFilter, filter_stats
from fusion_datasets.media import decode_audio, resample

CAPTIONS = {
    "music": "Music with a steady beat and chords.",
    "noise": "Wind blows steadily.",
    "speech": None,
    "long": "   ",
    "corrupt": "A dog barks.",
    "missing": "A car passes by.",
}


def _dataset(paths: dict[str, str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "id": list(CAPTIONS),
            "audio": [paths[name] for name in CAPTIONS],
            "caption": list(CAPTIONS.values()),
        }
    )


def test_scores_keep_flags_and_errors(tiny_zoo, clap_clips):
    model = str(tiny_zoo["clap"])
    step = ClapSimilarityFilter(model=model, threshold=0.0, batch_size=3)
    scored = run_map(_dataset(clap_clips), step)
    assert scored.num_rows == len(CAPTIONS)
    rows = {row["id"]: row for row in scored}
    clap = load_clap(model, device="cpu")
    clips = [resample(decode_audio(clap_clips[name]), clap.sampling_rate)[0] for name in ("music", "noise")]
    expected = clap_scores(clap, clips, [CAPTIONS["music"], CAPTIONS["noise"]])
    for name, score in zip(("music", "noise"), expected):
        assert rows[name]["clap_score"] == pytest.approx(float(score), abs=1e-5)
        assert rows[name]["clap_keep"] == (rows[name]["clap_score"] >= 0.0)
        assert rows[name]["errors"] == []
    for name in ("speech", "long", "corrupt", "missing"):
        assert rows[name]["clap_score"] is None and rows[name]["clap_keep"] is False
    assert rows["speech"]["errors"] == [] and rows["long"]["errors"] == []
    for name in ("corrupt", "missing"):
        assert [error["stage"] for error in rows[name]["errors"]] == ["decode"]


def test_threshold_decides_what_is_kept(tiny_zoo, clap_clips):
    ds = _dataset(clap_clips)
    keep_all = run_map(ds, ClapSimilarityFilter(model=str(tiny_zoo["clap"]), threshold=-1.0))
    keep_none = run_map(ds, ClapSimilarityFilter(model=str(tiny_zoo["clap"]), threshold=1.0))
    assert keep_all["clap_keep"] == [True, True, False, False, False, False]
    assert not any(keep_none["clap_keep"])
    assert keep_all["clap_score"] == keep_none["clap_score"]


def test_a_batch_without_captions_loads_no_model(clap_clips):
    step = ClapSimilarityFilter(model="/nonexistent/clap")
    out = step({"audio": [clap_clips["music"]], "caption": [None]})
    assert out == {"clap_score": [None], "clap_keep": [False], "errors": [[]]}


def test_caption_and_audio_columns_are_configurable(tiny_zoo, clap_clips):
    ds = datasets.Dataset.from_dict({"wav": [clap_clips["music"]], "text": ["Music."]})
    scored = run_map(
        ds, ClapSimilarityFilter(model=str(tiny_zoo["clap"]), caption_column="text", audio_column="wav")
    )
    assert scored[0]["clap_score"] is not None
    with pytest.raises(ValueError, match="reads captions from 'caption', which the batch lacks"):
        ClapSimilarityFilter(model=str(tiny_zoo["clap"]))({"audio": [clap_clips["music"]]})


def test_the_step_pickles_and_hashes_by_its_config(tiny_zoo, clap_clips):
    from datasets.fingerprint import Hasher

    step = ClapSimilarityFilter(model=str(tiny_zoo["clap"]))
    before = Hasher.hash(step)
    step({"audio": [clap_clips["music"]], "caption": ["Music."]})  # loads the model into the process cache
    assert Hasher.hash(step) == before
    assert len(pickle.dumps(step)) < 2000
    assert Hasher.hash(ClapSimilarityFilter(model=str(tiny_zoo["clap"]), threshold=0.2)) != before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "onnx", "kind must be one of"),
        ("threshold", 1.5, "threshold is a cosine"),
        ("batch_size", 0, "batch_size"),
    ],
)
def test_config_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ClapFilterConfig(**{field: value})


def test_filter_stats_counts_and_histogram():
    stats = filter_stats([0.3, 0.05, None, 0.08, float("nan"), -0.2, 1.0000001], threshold=0.08)
    assert (stats["total"], stats["scored"], stats["kept"], stats["removed"], stats["missing"]) == (
        7,
        5,
        3,
        2,
        2,
    )
    assert stats["removal_rate"] == pytest.approx(0.4)
    assert stats["histogram"]["edges"] == list(HISTOGRAM_EDGES) and len(HISTOGRAM_EDGES) == 41
    counts = stats["histogram"]["counts"]
    assert sum(counts) == 5 and counts[-1] == 1  # 1.0000001 is clipped into the last bin
    assert counts[int((0.3 + 1) / 0.05)] == 1
    empty = filter_stats([None])
    assert empty["removal_rate"] == 0.0 and empty["missing"] == 1 and sum(empty["histogram"]["counts"]) == 0
