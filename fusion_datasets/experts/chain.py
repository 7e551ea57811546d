"""Several experts over one batch, sharing its decoded audio and separated tracks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fusion_datasets import __version__
from fusion_datasets.experts.base import ERRORS, Expert, merge_features
from fusion_datasets.media import MediaBatch


class ExpertChain:
    """Run ``experts`` in order on each batch; one decode and one resample per rate serve them all.

    Example:
        >>> chain = ExpertChain([ASTAudioTagger(model=path), WhisperTranscriber(model=path)])  # doctest: +SKIP
        >>> ds = ds.map(chain, batched=True, with_rank=True, batch_size=8)  # doctest: +SKIP
    """

    def __init__(self, experts: Sequence[Expert]) -> None:
        self.experts = list(experts)

    def features(self) -> dict[str, Any]:
        """The ``datasets`` feature of every column the chain writes (``errors`` aside)."""
        return {name: feature for expert in self.experts for name, feature in expert.features().items()}

    def output_features(self, input_features: Any) -> Any:
        """The features of ``ds.map(self, ...)`` over a dataset with ``input_features``."""
        return merge_features(input_features, self.features())

    def __getstate__(self) -> dict[str, Any]:
        return {"experts": self.experts, "version": __version__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.experts = state["experts"]

    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: int | None = None) -> dict[str, list]:
        media = MediaBatch(batch)
        outputs: dict[str, list] = {}
        for expert in self.experts:
            # later experts read earlier ones' columns (the music gate reads the tagger's music_score)
            media.batch = {**media.batch, **outputs}
            outputs.update(expert.process(media, rank))
        outputs[ERRORS] = media.errors
        return outputs
