"""Source separation with Demucs: the vocal track for speech recognition, the rest for the others.

The paper separates vocals with Hybrid Transformer Demucs before Whisper. The separated tracks are
kept on the batch for the experts that follow in an :class:`~fusion_datasets.experts.chain.ExpertChain`
(``track="vocals"`` / ``"accompaniment"``), and written as audio columns when ``output_tracks`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets.media import MediaBatch, Waveform
from fusion_datasets.registry import register
from fusion_datasets.steps import ModelConfig, ModelStep

TRACKS = ("vocals", "accompaniment")


@dataclass(frozen=True)
class SeparationConfig(ModelConfig):
    model: str = "htdemucs"  # a demucs model name or signature
    repo: str | None = None  # a local folder of demucs models (``<sig>.th``, ``<name>.yaml``); None: demucs' hub
    shifts: int = 0
    overlap: float = 0.25
    output_tracks: bool = True  # write ``vocals`` and ``accompaniment`` audio columns
    output_sampling_rate: int = 16000


@register("separation", "htdemucs")
class HTDemucsSeparator(ModelStep[SeparationConfig]):
    """Splits each clip into ``vocals`` and ``accompaniment`` (every other Demucs source, summed).

    Example:
        >>> from fusion_datasets.synthetic import music, write_audio
        >>> separator = HTDemucsSeparator(model="htdemucs", repo=str(tiny_zoo["htdemucs"]))  # a local model repo
        >>> sorted(separator({"audio": [str(write_audio("music.wav", music(2.0, 16000), 16000))]}))
        ['accompaniment', 'errors', 'vocals']
    """

    stage = "separation"
    config_class = SeparationConfig

    @property
    def batch_size(self) -> int | None:
        # None: the whole batch on a GPU, one clip on the CPU, where benchmarks/experts.py measured a
        # batch of 16 at 0.45x the speed of a loop over the clips
        if self.config.batch_size is None and not self.device(None).startswith("cuda"):
            return 1
        return self.config.batch_size

    def writes(self) -> tuple[str, ...]:
        return TRACKS  # kept on the batch for the experts that follow, stored only with ``output_tracks``

    def features(self) -> dict[str, Any]:
        from datasets import Audio

        if not self.config.output_tracks:
            return {}
        return {track: Audio(sampling_rate=self.config.output_sampling_rate) for track in TRACKS}

    def _load(self, device: str, dtype: Any) -> Any:
        from demucs.pretrained import get_model

        model = get_model(self.config.model, repo=Path(self.config.repo) if self.config.repo else None)
        if "vocals" not in model.sources:
            raise ValueError(f"demucs model {self.config.model!r} has no vocals source (sources: {model.sources})")
        return model.to(device).eval()

    def _separate(self, model: Any, device: str, clips: list[np.ndarray]) -> list[tuple[Waveform, Waveform]]:
        import torch
        from demucs.apply import apply_model

        length = max(clip.shape[1] for clip in clips)
        batch = torch.zeros(len(clips), model.audio_channels, length)
        for index, clip in enumerate(clips):
            batch[index, :, : clip.shape[1]] = torch.from_numpy(clip)
        # demucs expects each mixture normalised by its own statistics (as demucs.separate does)
        mean = batch.mean(dim=(1, 2), keepdim=True)
        std = batch.std(dim=(1, 2), keepdim=True) + 1e-8
        with torch.inference_mode():
            sources = apply_model(model, (batch - mean) / std, shifts=self.config.shifts, split=True,
                                  overlap=self.config.overlap, device=device, progress=False)
        sources = (sources * std[:, None] + mean[:, None]).cpu().numpy()
        vocals = model.sources.index("vocals")
        rest = [index for index in range(len(model.sources)) if index != vocals]
        rate = model.samplerate
        return [
            (Waveform(sources[i, vocals, :, : clip.shape[1]], rate),
             Waveform(sources[i, rest, :, : clip.shape[1]].sum(0), rate))
            for i, clip in enumerate(clips)
        ]

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        model = self.load(rank, self._load)
        clips = media.audio(model.samplerate, channels=model.audio_channels)
        rows = [row for row, clip in enumerate(clips) if clip is not None]
        device = self.device(rank)
        separated = self.run_guarded(
            media, rows, lambda subset: self._separate(model, device, [clips[r] for r in subset])
        )
        for index, track in enumerate(TRACKS):
            media.set_track(track, [separated[row][index] if row in separated else None for row in range(media.size)])
        if not self.config.output_tracks:
            return {}
        rate = self.config.output_sampling_rate
        return {
            track: [
                {"array": audio[0], "sampling_rate": rate} if row in separated else None
                for row, audio in enumerate(media.audio(rate, track))
            ]
            for track in TRACKS
        }
