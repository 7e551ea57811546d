from typing import ClassVar

import datasets
import numpy as np
import pytest
import soundfile
from experts.conftest import clips_dataset, run_map

from fusion_datasets.experts.speech import SpeechConfig, WhisperTranscriber, dbfs, whisper_windows
from fusion_datasets.testing import media

COLUMNS = ("asr_text", "asr_language", "asr_no_speech_prob", "has_speech")


@pytest.fixture(scope="module")
def whisper(tiny_zoo) -> str:
    return str(tiny_zoo["whisper"])


def transcriber(model: str, **overrides) -> WhisperTranscriber:
    # the random tiny Whisper rarely writes <|endoftext|>: keep generation short
    return WhisperTranscriber(model=model, **{"max_new_tokens": 4, **overrides})


class RecordingTranscriber(WhisperTranscriber):
    """Records the number of windows of each clip that reaches the model."""

    windows_seen: ClassVar[list[list[int]]] = []

    def _transcribe(self, whisper, clips, language):
        self.windows_seen.append([len(clip) for clip in clips])
        return super()._transcribe(whisper, clips, language)


def test_whisper_windows_cut_long_clips_without_dropping_samples():
    signal = np.arange(65 * 16000, dtype=np.float32)
    pieces = whisper_windows(signal, 16000, 30.0)
    assert [len(piece) / 16000 for piece in pieces] == [30.0, 30.0, 5.0]
    np.testing.assert_array_equal(np.concatenate(pieces), signal)
    assert dbfs(np.zeros(100)) == -np.inf
    assert dbfs(np.full(100, 0.1)) == pytest.approx(-20.0)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="task must be one of transcribe, translate"):
        SpeechConfig(task="summarize")
    with pytest.raises(ValueError, match="chunk_seconds"):
        SpeechConfig(chunk_seconds=45.0)


def test_transcribes_every_row_and_survives_bad_audio(tmp_path, whisper, good_clips, bad_clips):
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    ds = clips_dataset({**good_clips, **bad_clips}, tmp_path)
    expert = transcriber(whisper)
    out = run_map(ds, expert)
    assert out.num_rows == ds.num_rows
    assert {name: out.features[name] for name in COLUMNS} == expert.features()
    rows = {row["id"]: row for row in out}
    for name in ["speech", "music", "noise", "surround", "long"]:
        row = rows[name]
        assert row["errors"] == [], name
        assert isinstance(row["asr_text"], str) and row["asr_text"], name
        assert row["asr_language"] in LANGUAGES
        assert 0.0 <= row["asr_no_speech_prob"] <= 1.0
        assert row["has_speech"] == (row["asr_no_speech_prob"] < 0.6 and bool(row["asr_text"]))
    assert [rows["silence"][name] for name in COLUMNS] == ["", None, None, False]
    assert rows["silence"]["errors"] == []
    # a few samples past the header: an error or a (silent) result, never a lost row
    assert rows["truncated"]["errors"] or isinstance(rows["truncated"]["asr_text"], str)
    for name in ["corrupt", "empty", "nan", "missing"]:
        assert all(rows[name][column] is None for column in COLUMNS), name
        assert [error["stage"] for error in rows[name]["errors"]] == ["decode"]
    rerun = run_map(ds, transcriber(whisper), load_from_cache_file=False)
    assert [rerun[column] for column in COLUMNS] == [out[column] for column in COLUMNS]


def test_long_clip_is_transcribed_window_by_window(tmp_path, whisper, bad_clips):
    samples, rate = soundfile.read(bad_clips["long"], dtype="float32")
    pieces = whisper_windows(samples, rate, 30.0)
    paths = {f"window{index}": str(tmp_path / f"window{index}.wav") for index in range(len(pieces))}
    for piece, path in zip(pieces, paths.values()):
        soundfile.write(path, piece, rate, subtype="FLOAT")
    expert = transcriber(whisper, language="en")
    whole = run_map(datasets.Dataset.from_dict({"audio": [bad_clips["long"]]}), expert)[0]
    apart = run_map(datasets.Dataset.from_dict({"audio": list(paths.values())}), expert)
    assert len(pieces) == 3
    assert whole["asr_text"] == " ".join(apart["asr_text"])
    assert whole["asr_language"] == "en" and set(apart["asr_language"]) == {"en"}


def test_silent_windows_never_reach_the_model(tmp_path, whisper, good_clips):
    voice_then_silence = np.concatenate([media.speech(3.0, 16000), media.silence(37.0, 16000)], axis=1)
    quiet = media.noise(3.0, 16000) * 10 ** (-75 / 20)  # about -80 dBFS: below the default floor
    paths = [
        good_clips["silence"],
        good_clips["speech"],
        str(media.write_audio(tmp_path / "voice_then_silence.wav", voice_then_silence, 16000)),
        str(media.write_audio(tmp_path / "quiet.wav", quiet, 16000)),
    ]
    RecordingTranscriber.windows_seen = []
    outputs = RecordingTranscriber(model=whisper, max_new_tokens=4)({"audio": paths})
    assert RecordingTranscriber.windows_seen == [[1, 1]]
    assert outputs["asr_text"][0] == outputs["asr_text"][3] == ""
    assert outputs["has_speech"][0] is outputs["has_speech"][3] is False
    assert outputs["asr_no_speech_prob"][0] is None and outputs["asr_language"][3] is None
    assert outputs["errors"] == [[], [], [], []]

    RecordingTranscriber.windows_seen = []
    RecordingTranscriber(model=whisper, max_new_tokens=4, silence_dbfs=-100.0)({"audio": paths[3:]})
    assert RecordingTranscriber.windows_seen == [[1]]


def test_reads_the_separated_vocals_and_falls_back_to_the_mix(whisper, good_clips):
    vocals = {"array": media.silence(3.0, 16000)[0], "sampling_rate": 16000}
    ds = datasets.Dataset.from_dict({"audio": [good_clips["speech"]] * 2, "vocals": [vocals, None]})
    out = run_map(ds, transcriber(whisper))
    assert out["asr_text"][0] == "" and out["has_speech"][0] is False
    assert out["asr_text"][1] and out["asr_language"][1] is not None
    mix = run_map(ds, transcriber(whisper, track="mix"))
    assert mix["asr_text"][0] == mix["asr_text"][1] == out["asr_text"][1]
    assert out["errors"] == mix["errors"] == [[], []]


@pytest.mark.parametrize(
    ("model", "overrides", "message"),
    [
        ("ast-audioset", {}, "supported model types: whisper"),
        ("whisper", {"language": "klingon"}, "'klingon' is not one of"),
        ("whisper", {"max_new_tokens": 200}, "max_new_tokens must be at most 124"),
    ],
)
def test_bad_model_or_settings_fail_at_the_first_map(tiny_zoo, good_clips, model, overrides, message):
    ds = datasets.Dataset.from_dict({"audio": [good_clips["speech"]]})
    with pytest.raises(ValueError, match=message):
        run_map(ds, transcriber(str(tiny_zoo[model]), **overrides))


@pytest.mark.slow
def test_ten_minute_clip(tmp_path, whisper):
    clip = media.mix(media.speech(600.0, 16000), media.noise(600.0, 16000), gains=[1.0, 0.2])
    path = media.write_audio(tmp_path / "ten_minutes.flac", clip, 16000)
    row = run_map(datasets.Dataset.from_dict({"audio": [str(path)]}), transcriber(whisper), batch_size=1)[0]
    assert row["errors"] == [] and row["asr_text"] and row["asr_language"]
