import pytest
from experts.conftest import clips_dataset, run_map

from fusion_datasets.experts.tagging import ASTAudioTagger
from fusion_datasets.experts.wav2vec2_tagging import Wav2Vec2AudioTagger
from fusion_datasets.media import windows


def test_windows_cover_the_signal():
    import numpy as np

    pieces = windows(np.arange(25), 10)
    assert [len(piece) for piece in pieces] == [10, 10, 5]
    assert [len(piece) for piece in windows(np.arange(0), 10)] == [0]
    assert [len(piece) for piece in windows(np.arange(3), 10, min_size=5)] == [5]


@pytest.mark.parametrize(("tagger", "model"), [(ASTAudioTagger, "ast-audioset"),
                                               (Wav2Vec2AudioTagger, "wav2vec2-audioset")])
def test_tags_and_music_score(tmp_path, tiny_zoo, good_clips, bad_clips, tagger, model):
    ds = clips_dataset({**good_clips, **bad_clips}, tmp_path)
    tagged = run_map(ds, tagger(model=str(tiny_zoo[model]), top_k=3, min_score=0.0))
    assert tagged.num_rows == ds.num_rows
    rows = {row["id"]: row for row in tagged}
    for name in [*good_clips, "surround", "long", "truncated"]:
        row = rows[name]
        assert row["errors"] == [], name
        assert len(row["audio_tags"]) == 3
        assert {tag["label"] for tag in row["audio_tags"]} <= {label.display_name for label in _labels()}
        scores = [tag["score"] for tag in row["audio_tags"]]
        assert scores == sorted(scores, reverse=True)
        assert 0.0 <= row["music_score"] <= 1.0
    for name in ["corrupt", "empty", "nan", "missing"]:
        assert rows[name]["audio_tags"] is None and rows[name]["music_score"] is None
        assert [error["stage"] for error in rows[name]["errors"]] == ["decode"]


def _labels():
    from fusion_datasets.labels import audioset_labels

    return audioset_labels()


def test_human_labels_are_kept(tmp_path, tiny_zoo, good_clips):
    import datasets

    human = [{"label": "Dog", "score": 1.0}]
    ds = datasets.Dataset.from_dict(
        {"audio": [good_clips["speech"], good_clips["music"]], "audio_tags": [human, None]}
    )
    tagged = run_map(ds, ASTAudioTagger(model=str(tiny_zoo["ast-audioset"])))
    assert tagged[0]["audio_tags"] == human
    assert tagged[1]["audio_tags"] and tagged[1]["audio_tags"] != human
    assert tagged[0]["music_score"] is not None


def test_min_score_filters_tags(tmp_path, tiny_zoo, good_clips):
    ds = clips_dataset(good_clips, tmp_path)
    tagged = run_map(ds, ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), min_score=0.999))
    assert all(row["audio_tags"] == [] for row in tagged)


def test_model_without_the_music_label_is_refused(tmp_path, tiny_zoo, good_clips):
    expert = ASTAudioTagger(model=str(tiny_zoo["ast-audioset"]), music_label="Musik")
    with pytest.raises(ValueError, match="no 'Musik' label"):
        run_map(clips_dataset(good_clips, tmp_path), expert)


def test_unsupported_architecture_is_named(tmp_path, tiny_zoo, good_clips):
    expert = ASTAudioTagger(model=str(tiny_zoo["qwen2.5-vl"]))
    with pytest.raises(ValueError, match="supported model types: .*audio-spectrogram-transformer"):
        run_map(clips_dataset(good_clips, tmp_path), expert)
    expert = Wav2Vec2AudioTagger(model=str(tiny_zoo["ast-audioset"]))
    refused = r"\(model_type 'audio-spectrogram-transformer'\); supported model types: wav2vec2"
    with pytest.raises(ValueError, match=refused):
        run_map(clips_dataset(good_clips, tmp_path), expert)


def test_padded_windows_score_as_alone(tmp_path, tiny_zoo, caplog):
    """A short clip batched with a longer one (padded to it, masked) scores as it does alone."""
    from fusion_datasets.testing import media

    short = str(media.write_audio(tmp_path / "short.wav", media.noise(0.5, 16000), 16000))
    long = str(media.write_audio(tmp_path / "long.wav", media.music(3.0, 16000), 16000))
    tagger = Wav2Vec2AudioTagger(model=str(tiny_zoo["wav2vec2-audioset"]), top_k=527, min_score=0.0)
    alone, together = tagger({"audio": [short]}), tagger({"audio": [short, long]})
    assert together["errors"] == [[], []] and "retrying row by row" not in caplog.text  # one batched call
    scores = [{tag["label"]: tag["score"] for tag in outputs["audio_tags"][0]} for outputs in (alone, together)]
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
    assert together["music_score"][0] == pytest.approx(alone["music_score"][0], abs=1e-5)
