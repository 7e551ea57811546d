"""What the GPU kit measures for each stage of the paper pipeline, every expert in process (``paper-inprocess``):
the toolkit's expert, built from the config's own options, and the bare model call on ready tensors that is its
ceiling.

Generation is fixed-length: with random weights a model stops at a random point, so every ``generate`` makes
exactly :data:`NEW_TOKENS` new tokens (``min_new_tokens = max_new_tokens``), about as many as a real answer
of that stage has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_datasets.media import Waveform, resample
from fusion_datasets.pipeline.config import load_config
from fusion_datasets.registry import build_step
from fusion_datasets.steps import Step

CONFIG = "paper-inprocess"  # the paper's experts, all in this process (paper serves the generative ones)
# New tokens per clip, fixed for timing: about what a real answer takes with the Qwen/Whisper tokenizers.
NEW_TOKENS = {
    "speech": 40,  # ~25 words spoken in a 10 s clip
    "sound": 96,  # a 3-4 sentence description of what is heard (the sound_v1 prompt)
    "music": 96,  # the same model folder as sound, so the same fixed length
    "visual": 160,  # 6-8 "MM:SS - ..." lines for 8 frames (the visual_v1 prompt)
}
Rows = Sequence[int]
# The caption the CLAP filter scores: about as long as a fused caption of the paper.
CAPTION = ("A man speaks calmly over soft acoustic guitar music while birds chirp in the background; "
           "a car passes by on a wet road and the rain gets heavier towards the end of the clip, "
           "then a door closes and the music fades out.")


@dataclass(frozen=True)
class Clips:
    """The benchmark's clips: stereo waveforms, the audio cells the toolkit decodes, one video for all."""

    audio: list[np.ndarray]  # (2, samples) float32 at ``rate``
    rate: int
    cells: list[Any]  # a file path per clip, or {"array", "sampling_rate"} where files cannot be decoded
    video: str | None

    def batch(self, rows: Sequence[int]) -> dict[str, list]:
        """A ``datasets``-style batch of ``rows``, with the columns every stage reads."""
        return {"id": [str(row) for row in rows], "audio": [self.cells[row] for row in rows],
                "video": [self.video] * len(rows), "music_score": [1.0] * len(rows), "caption": [CAPTION] * len(rows)}

    def mono(self, rows: Sequence[int], rate: int) -> list[np.ndarray]:
        """1-D clips at ``rate``, resampled as the toolkit resamples."""
        return [resample(Waveform(self.audio[row], self.rate), rate)[0] for row in rows]


@dataclass(frozen=True)
class Stage:
    """One stage: its model, its expert and its bare call (``prepare`` ready tensors, then ``call`` the model)."""

    name: str  # the stage name ``run --dry-run`` estimates
    model: str  # a key of ``gpu_models.SPECS``
    prepare: Callable[[Any, Any, Clips, Rows, Step, str], Any]  # (model, processor, clips, rows, expert, device)
    call: Callable[[Any, Any, Step, int | None], None]  # (model, inputs, expert, new tokens)
    new_tokens: int | None = None  # the fixed generation length (None: no generation)

    def expert(self, folder: str, device: str, batch_size: int) -> Step:
        """The toolkit's step for this stage, with :data:`CONFIG`'s options and the local model folder."""
        from fusion_datasets.clap.filter import ClapSimilarityFilter

        config = load_config(CONFIG)
        options: dict[str, Any] = {"device": device, "batch_size": batch_size}
        if self.name == "separation":
            options["repo"] = folder
        else:
            options["model"] = folder
        if self.new_tokens is not None:
            options["max_new_tokens"] = self.new_tokens
        if self.name == "clap_filter":
            return ClapSimilarityFilter(**{**config.filter, **options, "kind": "transformers"})
        return build_step(self.name, {**config.experts[self.name], **options})


def _to(inputs: Any, device: str, dtype: Any) -> Any:
    return inputs.to(device, dtype)  # a BatchFeature casts only its floating tensors


def _prepare_separation(model: Any, processor: Any, clips: Clips, rows: Rows, expert: Step, device: str) -> Any:
    import torch

    mix = torch.from_numpy(np.stack([clips.audio[row] for row in rows])).to(device)
    return (mix - mix.mean(dim=(1, 2), keepdim=True)) / (mix.std(dim=(1, 2), keepdim=True) + 1e-8)


def _call_separation(model: Any, inputs: Any, expert: Step, new_tokens: int | None) -> None:
    from demucs.apply import apply_model

    apply_model(model, inputs, shifts=expert.config.shifts, split=True, overlap=expert.config.overlap,
                device=inputs.device, progress=False)


def _prepare_features(model: Any, processor: Any, clips: Clips, rows: Rows, expert: Step, device: str) -> Any:
    extractor = getattr(processor, "feature_extractor", processor)
    rate = extractor.sampling_rate
    return _to(extractor(clips.mono(rows, rate), sampling_rate=rate, return_tensors="pt"), device, model.dtype)


def _call_whisper(model: Any, inputs: Any, expert: Step, new_tokens: int | None) -> None:
    model.generate(**inputs, language="en", task=expert.config.task, min_new_tokens=new_tokens,
                   max_new_tokens=new_tokens)


def _call_forward(model: Any, inputs: Any, expert: Step, new_tokens: int | None) -> None:
    model(**inputs)


def _prepare_audio_llm(model: Any, processor: Any, clips: Clips, rows: Rows, expert: Step, device: str) -> Any:
    text = processor.apply_chat_template([{"role": "user", "content": [
        {"type": "audio", "audio_url": "clip"}, {"type": "text", "text": expert.config.prompt}]}],
        add_generation_prompt=True, tokenize=False)
    rate = processor.feature_extractor.sampling_rate
    inputs = processor(text=[text] * len(rows), audio=clips.mono(rows, rate), sampling_rate=rate,
                       return_tensors="pt", padding=True)
    return _to(inputs, device, model.dtype)


def _call_generate(model: Any, inputs: Any, expert: Step, new_tokens: int | None) -> None:
    model.generate(**inputs, min_new_tokens=new_tokens, max_new_tokens=new_tokens, do_sample=False)


def _prepare_visual(model: Any, processor: Any, clips: Clips, rows: Rows, expert: Step, device: str) -> Any:
    from fusion_datasets.experts.visual import read_clip

    clip = read_clip(clips.video, num_frames=expert.config.num_frames, fps=expert.config.fps)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": expert.prompt_for(clip)}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text] * len(rows), videos=[clip.frames] * len(rows),
                       video_metadata=[clip.metadata] * len(rows), videos_kwargs={"do_sample_frames": False},
                       return_tensors="pt", padding=True)
    return inputs.to(device)


def _prepare_clap(model: Any, processor: Any, clips: Clips, rows: Rows, expert: Step, device: str) -> Any:
    import torch

    rate = processor.feature_extractor.sampling_rate
    audio = processor.feature_extractor(clips.mono(rows, rate), sampling_rate=rate, truncation="rand_trunc",
                                        return_tensors="pt")
    text = processor.tokenizer([CAPTION] * len(rows), padding=True, truncation=True, return_tensors="pt")
    is_longer = torch.zeros(len(rows), 1, dtype=torch.bool, device=device)
    return {"audio": {"input_features": audio["input_features"].to(device, model.dtype), "is_longer": is_longer},
            "text": text.to(device)}


def _call_clap(model: Any, inputs: Any, expert: Step, new_tokens: int | None) -> None:
    model.get_audio_features(**inputs["audio"])
    model.get_text_features(**inputs["text"])


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("separation", "htdemucs", _prepare_separation, _call_separation),
    Stage("speech", "whisper", _prepare_features, _call_whisper, NEW_TOKENS["speech"]),
    Stage("tagging", "ast", _prepare_features, _call_forward),
    Stage("sound", "qwen2-audio", _prepare_audio_llm, _call_generate, NEW_TOKENS["sound"]),
    Stage("music", "qwen2-audio", _prepare_audio_llm, _call_generate, NEW_TOKENS["music"]),
    Stage("visual", "qwen2.5-vl", _prepare_visual, _call_generate, NEW_TOKENS["visual"]),
    Stage("clap_filter", "clap", _prepare_clap, _call_clap),
)}
