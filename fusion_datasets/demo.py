"""The embedded default: a handful of synthetic sample clips run through the tiny pipeline on the CPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fusion_datasets.testing import media

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
    street = media.mix(media.noise(seconds, rate, seed=1), media.speech(seconds, rate), gains=[1.0, 0.3])
    recipes = {
        "speech": ("a voice reading a sentence", media.speech(seconds, rate), False),
        "music": ("a chord progression over a beat", media.music(seconds, rate, bpm=100), False),
        "street": ("noise with a distant voice, with video", street, True),
        "silence": ("digital silence", media.silence(seconds, rate), False),
    }
    clips = []
    for clip_id, (description, audio, with_video) in recipes.items():
        audio_path = media.write_audio(folder / f"{clip_id}.wav", audio, rate)
        video_path = media.write_video(folder / f"{clip_id}.mp4", seconds, audio=audio) if with_video else None
        clips.append(SampleClip(clip_id, description, audio_path, video_path))
    logger.info("wrote %d sample clips to %s", len(clips), folder)
    return clips


def run_demo(output: str | Path, tiny_models: bool = True) -> str:
    """Run the demo into ``output`` and return a one-paragraph summary of what it did.

    ``tiny_models`` uses the offline tiny zoo (random weights: the captions are noise, the plumbing
    is real); without it the demo would download the ``small`` config's models from the Hub.
    """
    if not tiny_models:
        raise NotImplementedError(
            "the demo with real models needs the `small` config of the pipeline runner; use --tiny-models"
        )
    from fusion_datasets.testing.zoo import build_tiny_zoo

    output = Path(output)
    clips = write_sample_clips(output / "clips")
    zoo = build_tiny_zoo(output / "tiny-zoo")
    return f"{len(clips)} sample clips in {output / 'clips'}; {len(zoo)} tiny models in {output / 'tiny-zoo'}"
