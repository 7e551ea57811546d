import subprocess
import sys
import textwrap

import pytest

from fusion_datasets.config import ConfigError
from fusion_datasets.experts import STAGES, ASTAudioTagger, Wav2Vec2AudioTagger, build_step, register, step_types
from fusion_datasets.experts.registry import DEFAULTS
from fusion_datasets.pipeline.config import build_steps, load_config


def test_every_stage_has_its_default_and_the_plan_keeps_the_stage_order():
    assert tuple(DEFAULTS) == STAGES and all(DEFAULTS[stage] in step_types(stage) for stage in STAGES)
    assert step_types("tagging") == {"ast": ASTAudioTagger, "wav2vec2": Wav2Vec2AudioTagger}
    steps = build_steps(load_config("paper"))
    assert [step.stage for step in steps][: len(STAGES)] == list(STAGES)


def test_the_default_type_is_the_step_a_config_without_type_ran():
    plain = build_steps(load_config("paper"))
    typed = build_steps(load_config("paper", [f"experts.{stage}.type={name}" for stage, name in DEFAULTS.items()]))
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
    with pytest.raises(ValueError, match="unknown expert stage 'tags'"):
        register("tags", "x")(Wav2Vec2AudioTagger)


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
        from fusion_datasets.experts import step_types
        from fusion_datasets.pipeline.config import load_config
        (step,) = load_config({str(tmp_path / "config.yaml")!r}).expert_steps()
        print(type(step).__name__, step.config.model, ",".join(step_types("tagging")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["PannsTagger", "my-org/panns", "ast,wav2vec2,panns"]
