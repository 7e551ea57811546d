"""The embedded default: a handful of synthetic sample clips run through the tiny pipeline on the CPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fusion_datasets.experts import (
    ASTAudioTagger,
    AudioLLMMusicCaptioner,
    AudioLLMSoundDescriber,
    Expert,
    ExpertChain,
    HTDemucsSeparator,
    VideoDescriber,
    WhisperTranscriber,
)
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


def tiny_experts(zoo: dict[str, Path]) -> list[Expert]:
    """Stage 1 on the tiny zoo, in the paper's order, with short generations (random weights ramble)."""
    return [
        HTDemucsSeparator(model="htdemucs", repo=str(zoo["htdemucs"]), output_tracks=False),
        WhisperTranscriber(model=str(zoo["whisper"]), max_new_tokens=16),
        ASTAudioTagger(model=str(zoo["ast-audioset"])),
        AudioLLMSoundDescriber(model=str(zoo["qwen2-audio"]), max_new_tokens=16),
        AudioLLMMusicCaptioner(model=str(zoo["qwen2-audio"]), max_new_tokens=16),
        VideoDescriber(model=str(zoo["qwen2.5-vl"]), num_frames=4, max_new_tokens=16),
    ]


def run_demo(output: str | Path, tiny_models: bool = True) -> str:
    """Run the demo into ``output`` and return a short summary of what it did.

    ``tiny_models`` uses the offline tiny zoo (random weights: the captions are noise, the plumbing
    is real); without it the demo would download the ``small`` config's models from the Hub.
    """
    if not tiny_models:
        raise NotImplementedError(
            "the demo with real models needs the `small` config of the pipeline runner; use --tiny-models"
        )
    import datasets

    from fusion_datasets.testing.zoo import build_tiny_zoo

    output = Path(output)
    clips = write_sample_clips(output / "clips")
    zoo = build_tiny_zoo(output / "tiny-zoo")
    ds = datasets.Dataset.from_dict({
        "id": [clip.id for clip in clips],
        "audio": [str(clip.audio) for clip in clips],
        "video": [str(clip.video) if clip.video else None for clip in clips],
        "source": ["demo"] * len(clips),
    })
    chain = ExpertChain(tiny_experts(zoo))
    cues = ds.map(chain, batched=True, with_rank=True, batch_size=4, features=chain.output_features(ds.features),
                  desc="experts", load_from_cache_file=False)
    path = output / "data" / "cues" / "demo.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    cues.to_parquet(str(path))
    failed = sum(1 for errors in cues["errors"] if errors)
    return f"{cues.num_rows} clips through {len(chain.experts)} experts ({failed} with errors) -> {path}"
