"""The zoo's fixed-answer LMs give their answer to every conversation they are meant for, on any CPU.

A model is checked when it is built (:func:`build_fixed_answer_lm`); these tests check the built zoo
again the way the pipeline asks it (the in-process backend, batched with left padding, greedy), and that
a model that falls short fails its build with its name and the prompt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from fusion_datasets.chat.backends import TransformersBackendConfig, TransformersChatBackend
from fusion_datasets.testing.zoo.fixed_answer import (
    FIXED_ANSWER_LMS,
    QA_ANSWER,
    ZooBuildError,
    build_fixed_answer_lm,
    demo_conversations,
    probe_conversations,
)

# kernels of another CPU: ATen's portable (non-AVX) code, MKL's SSE4.2 path, oneDNN up to SSE4.1
OTHER_CPU = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _answers(path, conversations, max_new_tokens: int = 200) -> list[str]:
    backend = TransformersChatBackend(TransformersBackendConfig(model=str(path), device="cpu", batch_size=8))
    return [completion.text for completion in backend.generate(conversations, max_new_tokens=max_new_tokens)]


@pytest.mark.parametrize("name", list(FIXED_ANSWER_LMS))
def test_each_fixed_answer_lm_gives_its_answer_to_its_probes_and_the_demos_prompts(tiny_zoo, name):
    answer, shapes = FIXED_ANSWER_LMS[name]
    conversations = probe_conversations(shapes, answer)
    if shapes[0] in ("fusion", "qa"):
        conversations += demo_conversations(tiny_zoo.root, shapes[0])
    assert any(len(conversation) == 3 for conversation in conversations)  # re-asks among them
    for conversation, text in zip(conversations, _answers(tiny_zoo[name], conversations)):
        assert text == answer, f"{name} answered {text!r} to {conversation[-1]['content'][-300:]!r}"


def test_a_model_that_falls_short_fails_its_build_naming_itself_and_the_prompt(tmp_path):
    with pytest.raises(ZooBuildError, match=r"tiny model qa-lm: after 3 training steps, 16 of 16 probe prompts "
                                            r"do not give its answer .* on the prompt ending '"):
        build_fixed_answer_lm(tmp_path, QA_ANSWER, shapes=("qa",), steps=3, rounds=0, name="qa-lm")
    assert not (tmp_path / "model.safetensors").exists()


def test_training_goes_on_until_every_probe_gives_the_answer(tmp_path, caplog):
    answer = "Two dogs bark."
    with caplog.at_level("INFO", logger="fusion_datasets.testing.zoo.fixed_answer"):
        build_fixed_answer_lm(tmp_path, answer, shapes=("chat",), steps=5, name="toy")
    assert "tiny toy: 16 of 16 probes short of the margin; 100 more steps" in caplog.text
    assert _answers(tmp_path, probe_conversations(("chat",), answer)) == [answer] * 16


_OTHER_CPU_BUILD = """
import json, sys
from pathlib import Path
from fusion_datasets.testing.zoo import build_tiny_model
path = build_tiny_model("judge-lm", sys.argv[1])
from fusion_datasets.chat.backends import TransformersBackendConfig, TransformersChatBackend
from fusion_datasets.testing.zoo.fixed_answer import FIXED_ANSWER_LMS, probe_conversations
answer, shapes = FIXED_ANSWER_LMS["judge-lm"]
backend = TransformersChatBackend(TransformersBackendConfig(model=str(path), device="cpu", batch_size=8))
print(json.dumps([c.text for c in backend.generate(probe_conversations(shapes, answer), max_new_tokens=64)]))
"""


def test_on_another_cpus_kernels_the_judge_lm_trains_to_other_weights_but_the_same_answers(tiny_zoo, tmp_path):
    environment = {**os.environ, **OTHER_CPU}
    result = subprocess.run([sys.executable, "-c", _OTHER_CPU_BUILD, str(tmp_path)], env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    answer, shapes = FIXED_ANSWER_LMS["judge-lm"]
    assert json.loads(result.stdout.splitlines()[-1]) == [answer] * len(probe_conversations(shapes, answer))
    here, there = (load_file(folder / "model.safetensors") for folder in (tiny_zoo["judge-lm"], tmp_path / "judge-lm"))
    assert any(not (here[key] == there[key]).all() for key in here)  # the kernels did change the arithmetic
