"""The audio-LLM sound describer and music captioner on the tiny random-weight Qwen2-Audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from datasets import Dataset, Value
from datasets.fingerprint import Hasher

from fusion_datasets.experts.audio_llm import (
    AudioLLMMusicCaptioner,
    AudioLLMSoundDescriber,
    MusicConfig,
    SoundConfig,
)
from fusion_datasets.experts.chain import ExpertChain
from fusion_datasets.experts.tagging import ASTAudioTagger
from fusion_datasets.testing.media import music, noise, speech, write_audio

PAPER_SOUND_PROMPT = "Describe the audio in detail, but there is no need for association or speculation."


@pytest.fixture(scope="module")
def qwen(tiny_zoo) -> str:
    return str(tiny_zoo["qwen2-audio"])


def _map(expert, ds: Dataset, batch_size: int = 4) -> Dataset:
    return ds.map(expert, batched=True, with_rank=True, batch_size=batch_size,
                  features=expert.output_features(ds.features), load_from_cache_file=False)


def _clips(tmp_path, durations=(1.0, 2.5, 4.0)) -> list[str]:
    makers = (speech, music, noise)
    return [str(write_audio(tmp_path / f"clip{i}.wav", makers[i % 3](seconds), 16000))
            for i, seconds in enumerate(durations)]


def test_sound_captions_every_row_deterministically(tmp_path, qwen):
    ds = Dataset.from_dict({"audio": _clips(tmp_path)})
    expert = AudioLLMSoundDescriber(model=qwen, max_new_tokens=4)
    first, second = _map(expert, ds, batch_size=2), _map(expert, ds, batch_size=2)
    assert first.features["sound_caption"] == Value("string")
    assert len(first) == 3 and all(isinstance(caption, str) for caption in first["sound_caption"])
    assert first["errors"] == [[], [], []]
    assert first["sound_caption"] == second["sound_caption"]


def test_a_left_padded_batch_captions_each_clip_as_alone(tmp_path, qwen):
    ds = Dataset.from_dict({"audio": _clips(tmp_path, (1.0, 3.7, 2.2))})  # different audio token counts
    expert = AudioLLMSoundDescriber(model=qwen, max_new_tokens=4)
    assert _map(expert, ds, batch_size=3)["sound_caption"] == _map(expert, ds, batch_size=1)["sound_caption"]


def test_max_seconds_cuts_the_clip(tmp_path, qwen):
    clip = music(3.0, 16000)
    paths = [write_audio(tmp_path / "long.wav", clip, 16000),
             write_audio(tmp_path / "head.wav", clip[:, :16000], 16000)]
    expert = AudioLLMSoundDescriber(model=qwen, max_new_tokens=4, max_seconds=1.0)
    out = _map(expert, Dataset.from_dict({"audio": [str(path) for path in paths]}))
    assert out["sound_caption"][0] == out["sound_caption"][1]


def test_music_is_captioned_only_where_the_score_passes(tmp_path, qwen):
    ds = Dataset.from_dict({"audio": _clips(tmp_path), "music_score": [0.9, 0.1, None]})
    out = _map(AudioLLMMusicCaptioner(model=qwen, max_new_tokens=4), ds)
    assert out.features["has_music"] == Value("bool") and out.features["music_caption"] == Value("string")
    assert out["has_music"] == [True, False, None]
    assert isinstance(out["music_caption"][0], str) and out["music_caption"][1:] == [None, None]
    assert out["errors"] == [[], [], []]


def test_the_model_is_not_touched_without_music(tmp_path, tiny_zoo):
    ds = Dataset.from_dict({"audio": _clips(tmp_path, (1.0, 2.0)), "music_score": [0.1, None]})
    # an AST checkpoint would fail the architecture check if the gate let a row through
    out = _map(AudioLLMMusicCaptioner(model=str(tiny_zoo["ast-audioset"])), ds)
    assert out["has_music"] == [False, None] and out["music_caption"] == [None, None]


def test_music_runs_after_the_tagger_in_a_chain(tmp_path, qwen, tiny_zoo):
    paths = [*_clips(tmp_path, (1.0, 2.0)), str(tmp_path / "missing.wav")]
    chain = ExpertChain([
        ASTAudioTagger(model=str(tiny_zoo["ast-audioset"])),
        AudioLLMMusicCaptioner(model=qwen, music_threshold=0.0, max_new_tokens=4),
    ])
    out = _map(chain, Dataset.from_dict({"audio": paths}))
    assert all(isinstance(score, float) for score in out["music_score"][:2])
    assert out["has_music"] == [True, True, None]
    assert all(isinstance(caption, str) for caption in out["music_caption"][:2])
    assert out["music_caption"][2] is None
    assert [[error["stage"] for error in errors] for errors in out["errors"]] == [[], [], ["decode"]]


def test_music_without_the_tagger_fails_clearly(tmp_path, qwen):
    expert = AudioLLMMusicCaptioner(model=qwen)
    with pytest.raises(ValueError, match="music_score.*tagging expert"):
        _map(expert, Dataset.from_dict({"audio": _clips(tmp_path, (1.0,))}))


def test_bad_inputs_become_row_errors(tmp_path, qwen):
    real = write_audio(tmp_path / "real.wav", speech(1.0, 16000), 16000)
    (tmp_path / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "truncated.wav").write_bytes(real.read_bytes()[:100])
    soundfile.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    nan = speech(1.0, 16000)
    nan[0, 100:200] = np.nan
    soundfile.write(tmp_path / "nan.wav", nan.T, 16000, subtype="FLOAT")
    write_audio(tmp_path / "six.wav", noise(2.0, 48000, channels=6), 48000)
    write_audio(tmp_path / "long.wav", music(65.0, 16000), 16000)
    names = ["corrupt", "truncated", "empty", "nan", "six", "long", "missing"]
    ds = Dataset.from_dict({"audio": [str(tmp_path / f"{name}.wav") for name in names]})
    mapped = _map(AudioLLMSoundDescriber(model=qwen, max_new_tokens=4), ds)
    assert len(mapped) == len(names)
    out = dict(zip(names, zip(mapped["sound_caption"], mapped["errors"])))
    for name in ("corrupt", "empty", "nan", "missing"):
        assert out[name][0] is None and [error["stage"] for error in out[name][1]] == ["decode"], name
    for name in ("six", "long"):
        assert isinstance(out[name][0], str) and out[name][1] == [], name
    assert (out["truncated"][0] is None) == bool(out["truncated"][1])  # a tiny clip or an error, never both


@pytest.mark.slow
def test_a_ten_minute_clip_is_described(tmp_path, qwen):
    path = write_audio(tmp_path / "ten.wav", noise(600.0, 16000), 16000)
    expert = AudioLLMSoundDescriber(model=qwen, max_new_tokens=4)
    out = _map(expert, Dataset.from_dict({"audio": [str(path)]}))
    assert isinstance(out["sound_caption"][0], str) and out["errors"] == [[]]


def test_an_unsupported_model_is_named(tmp_path, tiny_zoo):
    expert = AudioLLMSoundDescriber(model=str(tiny_zoo["ast-audioset"]))
    with pytest.raises(ValueError, match="supported model types: qwen2_audio"):
        expert({"audio": _clips(tmp_path, (1.0,))})


def test_prompts_are_the_papers_and_part_of_the_fingerprint(qwen):
    assert SoundConfig().prompt == PAPER_SOUND_PROMPT
    assert all(word in MusicConfig().prompt for word in ("genre", "instruments", "tempo", "mood"))
    assert MusicConfig().music_threshold == 0.5
    same = [AudioLLMSoundDescriber(SoundConfig(model=qwen, max_new_tokens=4)) for _ in range(2)]
    assert Hasher.hash(same[0]) == Hasher.hash(same[1])
    prompts = [AudioLLMSoundDescriber(model=qwen, prompt=prompt) for prompt in ("A", "B")]
    assert Hasher.hash(prompts[0]) != Hasher.hash(prompts[1])
    with pytest.raises(ValueError, match="max_new_tokens"):
        SoundConfig(max_new_tokens=0)


def test_the_card_names_a_prompt_that_is_not_the_bundled_text_custom():
    bundled = AudioLLMSoundDescriber(model="unused").card_entry()
    own = AudioLLMSoundDescriber(model="unused", prompt="List every sound you hear.").card_entry()
    assert bundled["prompt"] == "sound_v1" and own["prompt"] == "custom"
    assert own["prompt_sha256"] != bundled["prompt_sha256"]
