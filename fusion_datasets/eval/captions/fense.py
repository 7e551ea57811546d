"""FENSE (Zhou et al., 2022): Sentence-BERT similarity to the references, penalised for fluency errors.

- ``SBERT-sim``: a clip's mean cosine between its caption's and each reference's sentence embedding
  (a sentence-transformers model, mean-pooled and normalised; FENSE's is paraphrase-TinyBERT-L6-v2);
- the error detector: FENSE's ``echecker`` checkpoint (a BERT whose [CLS] state feeds a linear layer; a
  ``.ckpt`` holding ``model_type``, ``num_classes`` and ``state_dict``). A caption has an error when the
  sigmoid of its last logit passes 0.9; it reads the caption lower-cased without punctuation, padded to
  64 tokens, as FENSE does;
- ``FENSE = SBERT-sim * (1 - 0.9 * error)``, ``SPIDEr-FL = SPIDEr * (1 - 0.9 * error)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusion_datasets import runtime
from fusion_datasets.eval.classification import TextEncoder
from fusion_datasets.loading import loading_model

DEFAULT_SENTENCE_MODEL = "sentence-transformers/paraphrase-TinyBERT-L6-v2"
ERROR_THRESHOLD = 0.9
PENALTY = 0.9
MAX_TOKENS = 64


def sentence_similarity(encoder: TextEncoder, hypotheses: Sequence[str],
                        references: Sequence[Sequence[str]]) -> list[float]:
    """Each clip's mean cosine between its hypothesis and its references (each distinct text embedded once)."""
    texts = list(dict.fromkeys([*hypotheses, *(text for refs in references for text in refs)]))
    embeddings = encoder(texts)
    row = {text: index for index, text in enumerate(texts)}
    return [float(np.mean(embeddings[[row[text] for text in refs]] @ embeddings[row[hypothesis]]))
            for hypothesis, refs in zip(hypotheses, references)]


class ErrorDetector:
    """FENSE's fluency error detector from its checkpoint file (a path, or ``ORG/NAME/FILE`` on the Hub).

    ``base`` replaces the checkpoint's ``model_type`` (``bert-base-uncased``), whose config and tokenizer
    build the network: a local folder of it runs offline.
    """

    def __init__(self, checkpoint: str, base: str | None = None, device: str | None = None,
                 batch_size: int = 32) -> None:
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        with loading_model(checkpoint):
            states = torch.load(self._local(checkpoint), map_location="cpu", weights_only=True)
        base = base or states["model_type"]
        with loading_model(base):
            self.tokenizer = AutoTokenizer.from_pretrained(base)
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(base))
        self.network = torch.nn.Module()
        self.network.encoder = encoder
        self.network.clf = torch.nn.Linear(encoder.config.hidden_size, int(states["num_classes"]))
        state = {key: value for key, value in states["state_dict"].items()
                 if key != "encoder.embeddings.position_ids"}  # a buffer newer transformers do not save
        self.network.load_state_dict(state)
        self.device = runtime.resolve_device(device)
        self.network.to(self.device).eval()
        self.batch_size = batch_size

    @staticmethod
    def _local(checkpoint: str) -> str:
        if Path(checkpoint).is_file() or checkpoint.count("/") < 2:
            return checkpoint
        from huggingface_hub import hf_hub_download

        repo, filename = checkpoint.rsplit("/", 1)
        return hf_hub_download(repo, filename)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """The error probability (the last class's sigmoid) of each text."""
        import torch

        parts = []
        for start in range(0, len(texts), self.batch_size):
            cleaned = [re.sub(r"[^\w\s]", "", text).lower() for text in texts[start:start + self.batch_size]]
            tokens = self.tokenizer(cleaned, truncation=True, padding="max_length", max_length=MAX_TOKENS,
                                    return_tensors="pt").to(self.device)
            with torch.inference_mode():
                states = self.network.encoder(**tokens).last_hidden_state[:, 0]
                parts.append(torch.sigmoid(self.network.clf(states))[:, -1].float().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros(0)

    def __call__(self, texts: Sequence[str]) -> list[bool]:
        return [bool(probability > ERROR_THRESHOLD) for probability in self.probabilities(texts)]


def penalized(scores: Sequence[float], errors: Sequence[bool]) -> list[float]:
    """``score * (1 - 0.9 * error)`` per clip: FENSE from SBERT-sim, SPIDEr-FL from SPIDEr."""
    return [score * (1 - PENALTY * error) for score, error in zip(scores, errors)]
