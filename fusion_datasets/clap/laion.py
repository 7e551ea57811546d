"""Original LAION-CLAP ``.pt`` checkpoints (the paper's filter model) through the ``laion_clap`` package.

``laion_clap.CLAP_Module`` downloads ``roberta-base`` weights and tokenizer in its constructor. The
checkpoint already holds every text-branch weight, so only RoBERTa's config and tokenizer are needed:
they come from ``text_encoder`` (a Hub id, or a local folder to run offline), patched in while the
module is built. The audio encoder (HTSAT tiny/base/large) and fusion are read off the checkpoint.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from fusion_datasets import runtime
from fusion_datasets.clap.base import as_torch_dtype, check_clips, in_batches, seeded_numpy
from fusion_datasets.loading import loading_model

# HTSAT's patch-embedding width names its size in laion_clap's model configs.
_HTSAT_WIDTHS = {96: "HTSAT-tiny", 128: "HTSAT-base", 256: "HTSAT-large"}
_PATCH_WEIGHT = "audio_branch.patch_embed.proj.weight"
# laion_clap's text projection is Linear(768, ...): the text encoder must be RoBERTa-base wide.
_TEXT_WIDTH = 768


def read_laion_checkpoint(path: str | Path) -> dict[str, Any]:
    """The model state dict of a LAION-CLAP checkpoint, without DDP's ``module.`` prefix.

    ``text_branch.embeddings.position_ids`` is dropped: transformers no longer saves that buffer.
    """
    import torch

    # Not weights_only: released checkpoints pickle more than tensors, as laion_clap itself assumes.
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} holds no LAION-CLAP state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    state.pop("text_branch.embeddings.position_ids", None)
    return state


def laion_architecture(state: dict[str, Any]) -> tuple[str, bool]:
    """``(amodel, enable_fusion)`` of a LAION-CLAP state dict, e.g. ``("HTSAT-tiny", False)``."""
    patch = state.get(_PATCH_WEIGHT)
    width = None if patch is None else int(patch.shape[0])
    if width not in _HTSAT_WIDTHS:
        raise ValueError(
            f"not an HTSAT LAION-CLAP checkpoint ({_PATCH_WEIGHT} width {width}); "
            f"supported widths: {sorted(_HTSAT_WIDTHS)}"
        )
    fused = any(".mel_conv2d." in key or ".fusion_model." in key for key in state)
    return _HTSAT_WIDTHS[width], fused


class LaionClap:
    """An original LAION-CLAP checkpoint (``630k-audioset-best.pt`` and friends) behind the CLAP interface.

    Audio is quantised to 16 bits and prepared exactly as ``CLAP_Module.get_audio_embedding_from_data``
    does, each clip under a fixed seed. It runs in float32 only (laion_clap has no bfloat16 path).
    """

    sampling_rate = 48000

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        text_encoder: str = "roberta-base",
        device: str | None = None,
        dtype: Any = "float32",
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        import torch

        self.device = runtime.resolve_device(device)
        if as_torch_dtype(dtype, self.device) != torch.float32:
            raise ValueError(f"LaionClap runs in float32 only, got dtype {dtype!r}")
        state = read_laion_checkpoint(checkpoint)
        amodel, fused = laion_architecture(state)
        self.module = build_clap_module(amodel, fused, text_encoder, self.device)
        self.module.model.load_state_dict(state)
        self.module.model.eval()
        self.fused = fused
        audio_config = self.module.model_cfg["audio_cfg"]
        if int(audio_config["sample_rate"]) != self.sampling_rate:
            raise ValueError(
                f"expected a {self.sampling_rate} Hz model, {checkpoint} is {audio_config['sample_rate']} Hz"
            )
        self.dim = int(self.module.model.joint_embed_shape)
        self.batch_size = batch_size
        self.seed = seed
        self._data = importlib.import_module("laion_clap.training.data")

    def _audio_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        audio_config = self.module.model_cfg["audio_cfg"]
        inputs = []
        for clip in clips:
            waveform = torch.from_numpy(self._data.int16_to_float32(self._data.float32_to_int16(clip)))
            with seeded_numpy(self.seed):
                inputs.append(
                    self._data.get_audio_features(
                        {},
                        waveform,
                        int(audio_config["clip_samples"]),
                        data_truncating="fusion" if self.fused else "rand_trunc",
                        data_filling="repeatpad",
                        audio_cfg=audio_config,
                    )
                )
        with torch.inference_mode():
            return self.module.model.get_audio_embedding(inputs).float().cpu().numpy()

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return (
                self.module.model.get_text_embedding(self.module.tokenizer(list(texts))).float().cpu().numpy()
            )

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        return in_batches(check_clips(clips), self.batch_size, self._audio_batch, self.dim)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return in_batches(list(texts), self.batch_size, self._text_batch, self.dim)


@contextmanager
def _replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` set to ``value`` inside the block, restored after it.

    ``CLAP_Module`` takes no text encoder: its constructor calls ``RobertaModel.from_pretrained`` and
    ``RobertaTokenizer.from_pretrained`` on the names its modules imported, with ``roberta-base`` written in.
    Those two names are the only way to hand it ours, for the constructor's duration.
    """
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def build_clap_module(amodel: str, fused: bool, text_encoder: str, device: str) -> Any:
    """A random-weight ``laion_clap.CLAP_Module`` whose text branch is built from ``text_encoder``'s config.

    Nothing is downloaded when ``text_encoder`` is a local folder.
    """
    laion_clap = runtime.require("laion_clap", "laion")
    from transformers import AutoConfig, AutoTokenizer, RobertaModel

    with loading_model(text_encoder):
        config = AutoConfig.from_pretrained(text_encoder)
        tokenizer = AutoTokenizer.from_pretrained(text_encoder)
    if getattr(config, "hidden_size", None) != _TEXT_WIDTH:
        raise ValueError(f"text_encoder {text_encoder!r} must have hidden_size {_TEXT_WIDTH} (RoBERTa-base)")
    # laion_clap puts its own folder on sys.path: its model module is the top-level ``clap_module.model``.
    model_module = importlib.import_module("clap_module.model")
    hook = importlib.import_module("laion_clap.hook")
    random_text_branch = SimpleNamespace(from_pretrained=lambda *args, **kwargs: RobertaModel(config))
    local_tokenizer = SimpleNamespace(from_pretrained=lambda *args, **kwargs: tokenizer)
    with _replaced(model_module, "RobertaModel", random_text_branch), \
            _replaced(hook, "RobertaTokenizer", local_tokenizer):
        return laion_clap.CLAP_Module(enable_fusion=fused, device=device, amodel=amodel, tmodel="roberta")
