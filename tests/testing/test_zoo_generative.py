"""The generative tiny models load by path with the real Auto classes and generate from processor output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_datasets.testing.media import music, speech, write_video
from fusion_datasets.testing.zoo import build_tiny_model

MAX_NEW_TOKENS = 8
GENERATION_PROMPT = "<|im_start|>assistant\n"


def _generate(model, inputs) -> torch.Tensor:
    """Greedy generation, checked to keep each prompt and add 1..MAX_NEW_TOKENS tokens after it."""
    prompt_ids = inputs["input_ids"]
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    assert output.shape[0] == prompt_ids.shape[0]
    assert 0 < output.shape[1] - prompt_ids.shape[1] <= MAX_NEW_TOKENS
    assert torch.equal(output[:, : prompt_ids.shape[1]], prompt_ids)
    return output[:, prompt_ids.shape[1] :]


def _next_token_logits(model, inputs) -> torch.Tensor:
    """The logits generate() picks the first new token from, one row per prompt."""
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    return output.logits[0]


def test_chat_lm_generates_from_a_left_padded_chatml_batch(tiny_zoo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_zoo["chat-lm"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    conversations = [
        [{"role": "user", "content": "Is there speech?"}],
        [
            {"role": "system", "content": "Answer in one word, please."},
            {"role": "user", "content": [{"type": "text", "text": "Which instrument plays?"}]},
        ],
    ]

    inputs = tokenizer.apply_chat_template(
        conversations, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
    )

    prompts = tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=False)
    assert prompts[0].startswith("<|endoftext|>")  # the shorter conversation is padded on the left
    assert "<|endoftext|><|im_start|>system\nYou are a helpful assistant.<|im_end|>" in prompts[0]
    assert prompts[1].startswith("<|im_start|>system\nAnswer in one word, please.<|im_end|>")
    assert "<|im_start|>user\nWhich instrument plays?<|im_end|>" in prompts[1]
    assert all(prompt.endswith(GENERATION_PROMPT) for prompt in prompts)
    new_ids = _generate(model, inputs)
    answers = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
    assert isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # the left-padded row must score like its conversation alone (attending to the pads moves it by ~0.05)
    alone = tokenizer.apply_chat_template(
        conversations[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    batched = _next_token_logits(model, inputs)[0]
    assert torch.allclose(batched, _next_token_logits(model, alone)[0], atol=1e-5)


def test_qwen2_audio_expands_each_clip_and_generates(tiny_zoo):
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    path = tiny_zoo["qwen2-audio"]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForMultimodalLM.from_pretrained(path)
    clips = [speech(1.0, 16000)[0], music(2.5, 16000)[0]]
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in ("What sound is heard?", "Describe the audio in detail.")
    ]
    assert all("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n" in text for text in texts)
    assert all(text.endswith(GENERATION_PROMPT) for text in texts)

    inputs = processor(text=texts, audio=clips, sampling_rate=16000, return_tensors="pt", padding=True)

    assert inputs["input_features"].shape == (2, 128, 3000)  # every clip is padded to 30 s of 10 ms frames
    tokenizer = processor.tokenizer
    audio_bos, audio, audio_eos = tokenizer.convert_tokens_to_ids(
        ["<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
    )
    assert model.config.audio_token_index == audio
    # one token per 40 ms: 100 frames -> 50 after the stride-2 conv -> 25 after pooling (and 250 -> 62)
    for row, expected in zip(inputs["input_ids"].tolist(), (25, 62)):
        start, end = row.index(audio_bos), row.index(audio_eos)
        assert row[start + 1 : end] == [audio] * expected
    new_ids = _generate(model, inputs)
    answers = processor.batch_decode(new_ids, skip_special_tokens=True)
    assert isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)
    alone = processor(text=texts[:1], audio=clips[:1], sampling_rate=16000, return_tensors="pt")
    batched = _next_token_logits(model, inputs)[0]
    assert torch.allclose(batched, _next_token_logits(model, alone)[0], atol=1e-5)


def test_qwen2_5_vl_takes_decord_frames_as_a_video_and_generates(tiny_zoo, tmp_path):
    import decord
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_zoo["qwen2.5-vl"]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    reader = decord.VideoReader(str(write_video(tmp_path / "clip.mp4", duration=2.0, fps=10, size=(96, 64))))
    indices = [[0, 5, 10, 15], [0, 3, 6, 9, 12, 15]]  # sampled at 2 and 3 frames per second
    videos = [reader.get_batch(frame_indices).asnumpy() for frame_indices in indices]
    assert videos[0].shape == (4, 64, 96, 3)
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in ("What happens?", "Describe the video in detail.")
    ]
    assert all("<|vision_start|><|video_pad|><|vision_end|>" in text for text in texts)
    assert all(text.endswith(GENERATION_PROMPT) for text in texts)
    # Frames handed over as arrays carry no timing: the metadata says where they came from.
    metadata = [
        {"total_num_frames": len(reader), "fps": reader.get_avg_fps(), "frames_indices": frame_indices}
        for frame_indices in indices
    ]

    inputs = processor(text=texts, videos=videos, video_metadata=metadata, return_tensors="pt", padding=True)

    grid = inputs["video_grid_thw"]
    assert grid[:, 0].tolist() == [2, 3]  # two frames per temporal patch
    assert inputs["pixel_values_videos"].shape[0] == grid.prod(-1).sum()
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2 / 2, 2 / 3])
    video_pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert (inputs["input_ids"] == video_pad).sum(-1).tolist() == (grid.prod(-1) // 4).tolist()
    new_ids = _generate(model, inputs)
    answers = processor.batch_decode(new_ids, skip_special_tokens=True)
    assert isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_qwen2_5_vl_takes_an_image(tiny_zoo):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_zoo["qwen2.5-vl"]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    image = np.random.default_rng(0).integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text

    inputs = processor(text=[text], images=[image], return_tensors="pt")

    assert inputs["image_grid_thw"].tolist() == [[1, 2, 4]]  # 64x96 is resized to 28x56 pixels
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (inputs["input_ids"] == image_pad).sum().item() == 2
    _generate(model, inputs)


@pytest.mark.parametrize("name", ["chat-lm", "qwen2-audio", "qwen2.5-vl"])
def test_generative_builders_are_deterministic_and_small(tiny_zoo, tmp_path, name):
    rebuilt = build_tiny_model(name, tmp_path)

    weights = (tiny_zoo[name] / "model.safetensors").read_bytes()
    assert (rebuilt / "model.safetensors").read_bytes() == weights
    assert sum(f.stat().st_size for f in rebuilt.iterdir()) < 4 * 2**20
