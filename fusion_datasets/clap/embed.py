"""CLAP embeddings behind one small interface, from transformers checkpoints or LAION-CLAP ``.pt`` files.

Every backend takes mono 1-D clips at its ``sampling_rate`` (48 kHz for the released CLAPs) and
texts, embeds them in batches and returns L2-normalised float32 rows, so that a cosine similarity is
a dot product.

Determinism: CLAP's feature extraction crops a clip longer than its 10 s window at a random offset
(``rand_trunc``) or picks random chunks (``fusion``). Each clip is prepared alone under a fixed numpy
seed (the global numpy state is restored afterwards), so its embedding depends neither on the run nor
on the other clips of its batch.

Example:
    >>> clap = load_clap(str(tiny_zoo["clap"]))  # a local copy of laion/clap-htsat-unfused, say
    >>> audio = clap.embed_audio([np.zeros(48000, dtype=np.float32)])
    >>> similarities = audio @ clap.embed_text(["silence", "a dog barks"]).T
    >>> similarities.shape, round(float(np.linalg.norm(audio)), 4)
    ((1, 2), 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from fusion_datasets import runtime
from fusion_datasets.clap.base import (
    MAX_TEXT_TOKENS,
    ClapEmbedder,
    as_torch_dtype,
    check_clips,
    in_batches,
    seeded_numpy,
)
from fusion_datasets.loading import loading_model

DEFAULT_CLAP = "laion/clap-htsat-unfused"
CLAP_KINDS = ("auto", "transformers", "laion")


def clap_scores(clap: ClapEmbedder, clips: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
    """The cosine similarity of each clip with its own text (row ``i`` with row ``i``)."""
    if len(clips) != len(texts):
        raise ValueError(f"got {len(clips)} clips for {len(texts)} texts")
    return np.sum(clap.embed_audio(clips) * clap.embed_text(texts), axis=1)


_Clap = TypeVar("_Clap", bound="TransformersClap")


class TransformersClap:
    """A transformers ``ClapModel`` and ``ClapProcessor`` by Hub id or local path.

    Unfused checkpoints get ``truncation="rand_trunc"`` (the extractor's default, ``"fusion"``, makes
    4-channel input that crashes them); fused ones keep ``"fusion"``.

    Example:
        >>> clap = TransformersClap(str(tiny_zoo["clap"]), device="cpu")
        >>> clap.embed_text(["a dog barks"]).shape  # (1, 512) with laion/clap-htsat-unfused
        (1, 32)
    """

    def __init__(
        self,
        model: str = DEFAULT_CLAP,
        *,
        device: str | None = None,
        dtype: Any = "float32",
        batch_size: int = 16,
        revision: str | None = None,
        seed: int = 0,
    ) -> None:
        from transformers import ClapModel, ClapProcessor

        device = runtime.resolve_device(device)
        torch_dtype = as_torch_dtype(dtype, device)
        self._bind(
            ClapModel.from_pretrained(model, revision=revision, dtype=torch_dtype).to(device).eval(),
            ClapProcessor.from_pretrained(model, revision=revision),
            batch_size,
            seed,
        )

    @classmethod
    def wrap(cls: type[_Clap], model: Any, processor: Any, *, batch_size: int = 16, seed: int = 0) -> _Clap:
        """A ``ClapModel`` already in memory (one being trained), on its own device and dtype."""
        clap = cls.__new__(cls)
        clap._bind(model, processor, batch_size, seed)
        return clap

    def _bind(self, model: Any, processor: Any, batch_size: int, seed: int) -> None:
        parameter = next(model.parameters())
        self.model = model
        self.device = str(parameter.device)
        self.dtype = parameter.dtype
        self.feature_extractor = processor.feature_extractor
        self.tokenizer = processor.tokenizer
        self.fused = bool(self.model.config.audio_config.enable_fusion)
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.dim = int(self.model.config.projection_dim)
        self.batch_size = batch_size
        self.seed = seed

    def _audio_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        truncation = "fusion" if self.fused else "rand_trunc"
        features = []
        for clip in clips:
            with seeded_numpy(self.seed):
                extracted = self.feature_extractor(
                    clip, sampling_rate=self.sampling_rate, truncation=truncation, return_tensors="pt"
                )
            features.append(extracted["input_features"])
        # The extractor marks one random clip of an all-short batch as "longer" (a training-time
        # workaround); a clip is longer only if it exceeds the window, as LAION-CLAP's inference says.
        window = self.feature_extractor.nb_max_samples
        is_longer = torch.tensor([[len(clip) > window] for clip in clips], device=self.device)
        with torch.inference_mode():
            output = self.model.get_audio_features(
                input_features=torch.cat(features).to(self.device, self.dtype), is_longer=is_longer
            )
        return output.pooler_output.float().cpu().numpy()

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            return self.model.get_text_features(**tokens).pooler_output.float().cpu().numpy()

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        return in_batches(check_clips(clips), self.batch_size, self._audio_batch, self.dim)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return in_batches(list(texts), self.batch_size, self._text_batch, self.dim)


def clap_kind(model: str, kind: str = "auto") -> str:
    """``transformers`` or ``laion``: ``auto`` picks ``laion`` for a ``.pt`` file, else ``transformers``."""
    if kind not in CLAP_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CLAP_KINDS)}, got {kind!r}")
    if kind != "auto":
        return kind
    return "laion" if str(model).endswith(".pt") else "transformers"


def load_clap(
    model: str = DEFAULT_CLAP,
    kind: str = "auto",
    *,
    device: str | None = None,
    dtype: Any = "float32",
    batch_size: int = 16,
    seed: int = 0,
    revision: str | None = None,
    text_encoder: str = "roberta-base",
) -> ClapEmbedder:
    """A CLAP backend for ``model``: a transformers folder or Hub id, or an original LAION-CLAP ``.pt``.

    ``text_encoder`` (LAION-CLAP only) names the RoBERTa config and tokenizer its text branch is built
    from: a Hub id, or a local folder to run offline. ``revision`` applies to transformers models. A model
    that cannot be loaded is a UserError naming it (:func:`~fusion_datasets.loading.loading_model`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with loading_model(model):
        if clap_kind(model, kind) == "laion":
            from fusion_datasets.clap.laion import LaionClap

            return LaionClap(
                model, text_encoder=text_encoder, device=device, dtype=dtype, batch_size=batch_size, seed=seed
            )
        return TransformersClap(
            model, device=device, dtype=dtype, batch_size=batch_size, revision=revision, seed=seed
        )
