import pickle
import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest

from fusion_datasets.clap.filter import ClapSimilarityFilter
from fusion_datasets.config import ConfigError
from fusion_datasets.experts import ASTAudioTagger, AudioLLMSoundDescriber, Wav2Vec2AudioTagger
from fusion_datasets.media import MediaBatch
from fusion_datasets.pipeline.config import build_steps, load_config
from fusion_datasets.registry import DEFAULTS, STAGES, build_step, register, section, step_types


def test_every_stage_has_its_default_and_the_plan_keeps_the_stage_order():
    assert tuple(DEFAULTS) == STAGES and all(DEFAULTS[stage] in step_types(stage) for stage in STAGES)
    assert step_types("tagging") == {"ast": ASTAudioTagger, "wav2vec2": Wav2Vec2AudioTagger}
    steps = build_steps(load_config("paper"))
    assert [step.stage for step in steps][: len(STAGES)] == list(STAGES)


def test_the_default_type_is_the_step_a_config_without_type_ran():
    plain = build_steps(load_config("paper"))
    typed = build_steps(load_config("paper", [f"{section(stage)}.type={name}" for stage, name in DEFAULTS.items()]))
    assert [type(step) for step in typed] == [type(step) for step in plain]
    assert [step.fingerprint() for step in typed] == [step.fingerprint() for step in plain]


def test_a_type_is_checked_with_its_own_config():
    assert build_step("tagging", {"type": "wav2vec2", "model": "m", "top_k": 3}).config.top_k == 3
    with pytest.raises(ConfigError, match=r"experts.tagging.type: expected a string, got 3"):
        build_step("tagging", {"type": 3})
    with pytest.raises(ConfigError, match=r"experts.speech.type: unknown type 'ast'; speech types: whisper"):
        build_step("speech", {"type": "ast"})


def test_register_refuses_a_taken_name_and_a_step_of_another_stage():
    with pytest.raises(ValueError, match="'ast' is taken by fusion_datasets.experts.tagging.ASTAudioTagger"):
        register("tagging", "ast")(Wav2Vec2AudioTagger)
    with pytest.raises(ValueError, match="is a 'tagging' step, not a 'speech' step"):
        register("speech", "tagger")(Wav2Vec2AudioTagger)
    with pytest.raises(ValueError, match="unknown stage 'tags'"):
        register("tags", "x")(Wav2Vec2AudioTagger)


class StricterFilter(ClapSimilarityFilter):
    """A filter of another kind, as a user's package would add one: one class and one ``register`` line."""

    def counters(self, outputs):
        return {**super().counters(outputs), "strict": 1}


register("clap_filter", "stricter")(StricterFilter)


def test_fusion_filter_and_qa_come_from_the_registry_by_type():
    steps = {step.stage: step for step in build_steps(load_config("paper", ["filter.type=stricter",
                                                                            "filter.threshold=0.5"]))}
    assert type(steps["clap_filter"]) is StricterFilter and steps["clap_filter"].config.threshold == 0.5
    assert [type(steps[stage]).__name__ for stage in ("fusion", "qa")] == ["CaptionFuser", "QAGenerator"]
    with pytest.raises(ConfigError, match=r"qa.type: unknown type 'rules'; qa types: llm"):
        build_steps(load_config("paper", ["qa.type=rules"]))
    with pytest.raises(ConfigError, match=r"unknown key filter.treshold; allowed: audio_column"):
        build_steps(load_config("paper", ["filter.type=stricter", "filter.treshold=0.5"]))


def test_another_package_adds_a_type_through_its_entry_point(tmp_path):
    """An installed distribution's ``fusion_datasets.steps`` entry point is a type of its stage."""
    (tmp_path / "my_taggers.py").write_text(textwrap.dedent("""
        from fusion_datasets.experts import AudioClassificationTagger

        class PannsTagger(AudioClassificationTagger):
            model_types = ("panns",)
    """))
    dist = tmp_path / "my_taggers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-taggers\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fusion_datasets.steps]\ntagging.panns = my_taggers:PannsTagger\n")
    (tmp_path / "config.yaml").write_text("experts:\n  tagging: {type: panns, model: my-org/panns}\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from fusion_datasets.registry import step_types
        from fusion_datasets.pipeline.config import load_config
        (step,) = load_config({str(tmp_path / "config.yaml")!r}).expert_steps()
        print(type(step).__name__, step.config.model, ",".join(step_types("tagging")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["PannsTagger", "my-org/panns", "ast,wav2vec2,panns"]


class SoundEventLister(AudioLLMSoundDescriber):
    """A sound expert of another kind, as a user's package would add one: its answer (a list of sound
    events) reaches the fusion and QA prompts and the card under its own name, and no other file changes."""

    fusion_texts: ClassVar[dict[str, str]] = {"sound events": "sound_caption"}
    qa_texts = fusion_texts
    coverage: ClassVar[dict[str, str]] = {"sound events": "sound_caption"}


register("sound", "event-list")(SoundEventLister)
CUES = {"audio_tags": [[{"label": "Dog", "score": 0.9}]], "has_speech": [True], "asr_text": ["hello"],
        "sound_caption": ["dog; car"], "music_caption": [None], "video_caption": ["a street"],
        "caption": ["A dog barks."]}


def _llm_steps(config):
    return {step.stage: step for step in build_steps(config) if step.stage in ("fusion", "qa")}


def test_a_new_expert_brings_its_cues_to_fusion_and_qa_in_the_prompts_order():
    steps = _llm_steps(load_config("paper", ["experts.sound.type=event-list"]))
    batch = MediaBatch(CUES)
    # the prompt names every built-in key, in its own order (tags before speech); a key it does not name goes last
    assert list(steps["fusion"].prompt_data(batch, 0).items()) == [
        ("high-confidence audio tags", "Dog(90%)"), ("speech content", "hello"),
        ("video description", "a street"), ("sound events", "dog; car")]
    assert steps["qa"].prompt_data(batch, 0) == {"caption": "A dog barks.", "audio tags": "Dog",
                                                  "sound events": "dog; car"}
    assert "sound_caption" in steps["fusion"].reads() and "asr_text" not in steps["qa"].reads()
    copied = pickle.loads(pickle.dumps(steps["fusion"]))  # as Ray and map workers get it
    assert copied.experts == steps["fusion"].experts
    assert copied.prompt_data(batch, 0) == steps["fusion"].prompt_data(batch, 0)
    # which experts a step asks is not what it computes: a stage's columns are
    plain = _llm_steps(load_config("paper"))
    assert [step.fingerprint() for step in steps.values()] == [step.fingerprint() for step in plain.values()]


def test_a_disabled_stage_still_names_its_cue_and_a_custom_prompt_orders_them():
    steps = _llm_steps(load_config("paper", ["experts.speech.enabled=false", "experts.tagging.enabled=false",
                                             """fusion.prompt='{cues_json} "video description", "speech content"'"""]))
    assert list(steps["fusion"].prompt_data(MediaBatch(CUES), 0)) == [
        "video description", "speech content", "high-confidence audio tags", "audio description"]
