"""Every audio-LM family the in-process backend supports, on its tiny random-weight model from the zoo."""

from __future__ import annotations

import pytest
from datasets import Dataset

from fusion_datasets.experts.audio_llm import AudioLLMMusicCaptioner, AudioLLMSoundDescriber
from fusion_datasets.experts.audio_lm import FAMILIES, SUPPORTED_MODEL_TYPES, load_audio_lm
from fusion_datasets.testing.media import music, noise, silence, write_audio

# zoo name of each supported model type: every family the README lists is tested here
ZOO = {"qwen2_audio": "qwen2-audio", "audioflamingo3": "audioflamingo3", "musicflamingo": "musicflamingo",
       "qwen2_5_omni": "qwen2.5-omni", "qwen3_omni_moe": "qwen3-omni", "granite_speech": "granite-speech"}


def test_every_supported_family_has_a_tiny_model():
    assert set(ZOO) == set(SUPPORTED_MODEL_TYPES)


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory) -> list[str]:
    """Silence, a 0.5 s clip and a 45 s clip (longer than Qwen2-Audio's 30 s window)."""
    folder = tmp_path_factory.mktemp("family-clips")
    clips = {"silence": silence(2.0, 16000), "short": noise(0.5, 16000), "long": music(45.0, 16000)}
    return [str(write_audio(folder / f"{name}.wav", audio, 16000)) for name, audio in clips.items()]


@pytest.mark.parametrize("model_type", sorted(ZOO))
def test_the_sound_expert_captions_with_each_family(model_type, tiny_zoo, three_clips):
    expert = AudioLLMSoundDescriber(model=str(tiny_zoo[ZOO[model_type]]), device="cpu", max_new_tokens=3,
                                    max_seconds=60.0)
    ds = Dataset.from_dict({"audio": three_clips})
    out = ds.map(expert, batched=True, with_rank=True, batch_size=3, features=expert.output_features(ds.features),
                 load_from_cache_file=False)
    assert all(isinstance(caption, str) for caption in out["sound_caption"])
    assert out["errors"] == [[], [], []]  # the 45 s clip is cut to what the family takes, not refused


@pytest.mark.parametrize("model_type", ["qwen2_5_omni", "qwen3_omni_moe"])
def test_an_omni_model_loads_only_the_part_that_writes(model_type, tiny_zoo):
    lm = load_audio_lm(str(tiny_zoo[ZOO[model_type]]), "cpu", None)
    assert FAMILIES[model_type].writer == "thinker"
    assert type(lm.model).__name__.endswith("ThinkerForConditionalGeneration")


@pytest.mark.parametrize("name", sorted(set(ZOO.values()) - {"qwen2-audio"}))
def test_the_tiny_family_models_are_small_and_offline_complete(name, tiny_zoo):
    folder = tiny_zoo[name]
    assert sum(path.stat().st_size for path in folder.iterdir()) < 4 * 2**20
    assert {"config.json", "model.safetensors", "processor_config.json"} <= {path.name for path in folder.iterdir()}


def test_the_readme_lists_exactly_the_tested_families():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert set(re.findall(r"^\| [^|]+ \(`(\w+)`\) \| `experts\.", readme, re.MULTILINE)) == set(ZOO)


def test_music_flamingo_captions_music_where_the_tagger_heard_it(tiny_zoo, three_clips):
    expert = AudioLLMMusicCaptioner(model=str(tiny_zoo["musicflamingo"]), device="cpu", max_new_tokens=3)
    ds = Dataset.from_dict({"audio": three_clips, "music_score": [0.1, None, 0.9]})
    out = ds.map(expert, batched=True, with_rank=True, features=expert.output_features(ds.features),
                 load_from_cache_file=False)
    assert out["has_music"] == [False, None, True]
    assert out["music_caption"][:2] == [None, None] and isinstance(out["music_caption"][2], str)
