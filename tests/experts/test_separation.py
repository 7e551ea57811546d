import numpy as np
import pytest
from experts.conftest import clips_dataset, run_map

from fusion_datasets.experts.separation import HTDemucsSeparator


@pytest.fixture(scope="module")
def separator(tiny_zoo):
    return HTDemucsSeparator(model="htdemucs", repo=str(tiny_zoo["htdemucs"]))


def test_tracks_are_written_as_audio_columns(tmp_path, separator, good_clips, bad_clips):
    paths = {**good_clips, **{kind: bad_clips[kind] for kind in ("corrupt", "nan", "surround", "missing")}}
    separated = run_map(clips_dataset(paths, tmp_path), separator, batch_size=3)
    assert separated.num_rows == len(paths)
    rows = {row["id"]: row for row in separated}
    for name in [*good_clips, "surround"]:
        assert rows[name]["errors"] == []
        vocals = rows[name]["vocals"].get_all_samples()
        accompaniment = rows[name]["accompaniment"].get_all_samples()
        assert vocals.sample_rate == accompaniment.sample_rate == 16000
        expected = 3.0 if name in good_clips else 2.0
        assert vocals.data.shape[1] == pytest.approx(expected * 16000, abs=2)
    for name in ["corrupt", "nan", "missing"]:
        assert rows[name]["vocals"] is None and rows[name]["accompaniment"] is None
        assert [error["stage"] for error in rows[name]["errors"]] == ["decode"]


def test_tracks_are_left_on_the_batch_for_the_next_experts(separator, good_clips):
    from fusion_datasets.media import MediaBatch

    media = MediaBatch({"audio": [good_clips["music"], good_clips["speech"]]})
    separator.process(media)
    for row in range(2):
        mix = media.audio(44100, channels=2)[row]
        for track in ("vocals", "accompaniment"):
            waveform = media.waveforms(track)[row]
            assert (waveform.sampling_rate, waveform.samples.shape) == (44100, mix.shape)
            assert not np.allclose(waveform.samples, mix)


def test_batched_separation_matches_one_clip_at_a_time(tmp_path, separator, good_clips):
    ds = clips_dataset({name: good_clips[name] for name in ("speech", "music")}, tmp_path)
    batched = HTDemucsSeparator(model="htdemucs", repo=separator.config.repo, batch_size=2)
    together = run_map(ds, batched, batch_size=2)
    alone = run_map(ds, separator, batch_size=1, load_from_cache_file=False)
    for one, two in zip(together, alone):
        np.testing.assert_allclose(one["vocals"]["array"], two["vocals"]["array"], atol=1e-4)


def test_tracks_can_stay_in_memory(tmp_path, tiny_zoo, good_clips):
    expert = HTDemucsSeparator(model="htdemucs", repo=str(tiny_zoo["htdemucs"]), output_tracks=False)
    separated = run_map(clips_dataset({"music": good_clips["music"]}, tmp_path), expert)
    assert set(separated.column_names) == {"id", "audio", "errors"}
