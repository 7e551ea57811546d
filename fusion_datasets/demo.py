"""The embedded default: synthetic sample clips through the whole pipeline, on the CPU, to a local folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fusion_datasets import synthetic
from fusion_datasets.pipeline.config import PipelineConfig, build_steps, load_config, tiny_zoo_dir
from fusion_datasets.pipeline.runner import PipelineRunner

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CLIP_SECONDS = 4.0


@dataclass(frozen=True)
class SampleClip:
    id: str
    description: str
    audio: Path
    video: Path | None


def write_sample_clips(folder: str | Path) -> list[SampleClip]:
    """Write the demo's sample clips (speech, music, street noise with video, silence) into ``folder``.

    The clips are synthesized, so the demo needs no download; rewriting them gives the same files.
    """
    folder = Path(folder)
    seconds, rate = CLIP_SECONDS, SAMPLE_RATE
    street = synthetic.mix(synthetic.noise(seconds, rate, seed=1), synthetic.speech(seconds, rate), gains=[1.0, 0.3])
    recipes = {
        "speech": ("a voice reading a sentence", synthetic.speech(seconds, rate), False),
        "music": ("a chord progression over a beat", synthetic.music(seconds, rate, bpm=100), False),
        "street": ("noise with a distant voice, with video", street, True),
        "silence": ("digital silence", synthetic.silence(seconds, rate), False),
    }
    clips = []
    for clip_id, (description, audio, with_video) in recipes.items():
        audio_path = synthetic.write_audio(folder / f"{clip_id}.wav", audio, rate)
        video_path = synthetic.write_video(folder / f"{clip_id}.mp4", seconds, audio=audio) if with_video else None
        clips.append(SampleClip(clip_id, description, audio_path, video_path))
    logger.info("wrote %d sample clips to %s", len(clips), folder)
    return clips


class DemoUnavailable(RuntimeError):
    """The demo's real models can be neither found locally nor downloaded."""


def _check_models_reachable(config: PipelineConfig) -> None:
    from huggingface_hub import HfApi

    models = {step.config.model for step in build_steps(config) if hasattr(step.config, "model")}
    models |= {config.llm.model}
    for model in sorted(models):
        if Path(model).exists() or "/" not in model:
            continue
        try:
            HfApi().model_info(model, timeout=10)
        except Exception as error:  # noqa: BLE001 - any failure means the same thing to the user
            raise DemoUnavailable(
                f"the demo's `small` config needs {model}, which cannot be reached ({type(error).__name__}); "
                "run `fusion-datasets demo --tiny-models` for the same pipeline on offline tiny models"
            ) from error


def run_demo(output: str | Path, tiny_models: bool = False) -> str:
    """Run the pipeline on the sample clips into ``output``; returns a summary naming the card.

    With ``tiny_models`` the ``tiny`` config runs (the offline zoo: random weights, so the captions are
    noise but the plumbing is real); otherwise the ``small`` config, whose models come from the Hub.
    """
    output = Path(output)
    clips = write_sample_clips(output / "clips")
    overrides = [f"input.path={output / 'clips'}", f"output.path={output / 'dataset'}"]
    config = load_config("tiny" if tiny_models else "small", overrides)
    if tiny_models:
        from fusion_datasets.testing.zoo import build_tiny_zoo

        build_tiny_zoo(tiny_zoo_dir())
    else:
        _check_models_reachable(config)
    stats = PipelineRunner(config).run().stats
    return (
        f"{stats['clips']} sample clips ({len(clips)} written): {stats['captions']} captions, "
        f"{stats['qa_pairs']} QA pairs, {stats['clips_with_errors']} clips with errors\n"
        f"dataset card: {output / 'dataset' / 'README.md'}"
    )
