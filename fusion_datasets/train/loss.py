"""The symmetric InfoNCE loss over the global batch: embeddings gathered from every process.

Every process computes the same ``global x global`` logits. Only its own rows of the gathered
embeddings carry a gradient, so the encoders' gradients of the global loss add up over processes;
DDP averages them, hence the loss is scaled by the number of processes before ``backward``. The logit
scales take part in every process' full logits, so their gradient is divided by that number first:
each gradient then equals the one of a single process holding the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def gather_keeping_grad(tensor: torch.Tensor, accelerator: Any, sizes: Sequence[int]) -> torch.Tensor:
    """Rows of every process (``sizes[rank]`` each), this process' own rows keeping their gradient."""
    if accelerator.num_processes == 1:
        return tensor
    padded = accelerator.pad_across_processes(tensor.detach(), dim=0)
    gathered = accelerator.gather(padded)
    most = padded.shape[0]
    parts = [gathered[rank * most : rank * most + size] for rank, size in enumerate(sizes)]
    parts[accelerator.process_index] = tensor
    return torch.cat(parts)


def shared_scale(log_scale: torch.Tensor, num_processes: int) -> torch.Tensor:
    """``exp(log_scale)`` whose gradient is divided by ``num_processes`` (see the module docstring)."""
    scale = log_scale.exp()
    return scale / num_processes + scale.detach() * (1 - 1 / num_processes)


def clap_contrastive_loss(
    audio: torch.Tensor, text: torch.Tensor, scale_audio: torch.Tensor, scale_text: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, logits_per_text)``: the mean of both directions' cross-entropy, row ``i`` matching ``i``.

    The logits are ``ClapModel``'s: text-to-audio scaled by ``logit_scale_t``, audio-to-text by
    ``logit_scale_a``; the embeddings are L2-normalised. (``ClapModel(return_loss=True)`` transposes
    ``logits_per_audio`` and so counts the text-to-audio direction twice; this loss takes both.)

    Example:
        >>> unit = torch.eye(3)
        >>> loss, logits = clap_contrastive_loss(unit, unit, torch.tensor(10.0), torch.tensor(10.0))
        >>> tuple(logits.shape), round(float(loss), 4)
        ((3, 3), 0.0001)
    """
    audio, text = audio.float(), text.float()
    labels = torch.arange(len(audio), device=audio.device)
    logits_per_text = scale_text * text @ audio.T
    logits_per_audio = scale_audio * audio @ text.T
    loss = (F.cross_entropy(logits_per_text, labels) + F.cross_entropy(logits_per_audio, labels)) / 2
    return loss, logits_per_text
