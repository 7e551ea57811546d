"""What the CLAP backends share: the embedder protocol, batching, normalisation, seeding, dtypes.

:mod:`~fusion_datasets.clap.embed` (transformers) and :mod:`~fusion_datasets.clap.laion` (LAION-CLAP
``.pt`` files) both build on this module, so neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from fusion_datasets import runtime

# LAION-CLAP was trained on (and its package truncates to) 77 text tokens; the transformers backend
# uses the same limit so that both backends score one caption alike.
MAX_TEXT_TOKENS = 77


class ClapEmbedder(Protocol):
    """What every CLAP backend offers: the clip rate, the embedding size and the two embedders."""

    sampling_rate: int
    dim: int

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """``(len(clips), dim)`` unit rows for mono 1-D clips at ``sampling_rate``."""

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` unit rows."""


def normalize_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (an all-zero row stays zero)."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return embeddings / np.maximum(norms, np.finfo(np.float32).tiny)


@contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """Run a block under ``np.random.seed(seed)`` and restore the caller's global numpy state after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def check_clips(clips: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The clips as float32 arrays; anything but a non-empty 1-D array is refused."""
    arrays = [np.asarray(clip, dtype=np.float32) for clip in clips]
    for index, clip in enumerate(arrays):
        if clip.ndim != 1 or clip.size == 0:
            raise ValueError(f"clip {index} must be a non-empty mono 1-D array, got shape {clip.shape}")
    return arrays


def in_batches(
    items: Sequence[Any], batch_size: int, embed: Callable[[Sequence[Any]], np.ndarray], dim: int
) -> np.ndarray:
    """``embed`` over consecutive batches of ``items``, concatenated and L2-normalised."""
    parts = [embed(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]
    return normalize_rows(np.concatenate(parts)) if parts else np.zeros((0, dim), dtype=np.float32)


def as_torch_dtype(dtype: Any, device: str) -> Any:
    """A torch dtype as is; a name (``auto``, ``float32``...) resolved for ``device``."""
    return runtime.resolve_dtype(dtype, device) if isinstance(dtype, str) else dtype
