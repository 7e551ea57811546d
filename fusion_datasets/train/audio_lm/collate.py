"""Batches for supervised fine-tuning through each family's own processor and chat template.

A row is a conversation: the user's turn holds the clip (an ``audio`` content part, at the processor's rate)
and the instruction, the assistant's turn the answer. The processor expands the audio into its placeholder
tokens and computes the audio features, as it does for generation. Labels are the input ids with -100 on
the padding, on the audio placeholders (the family's ``audio_tokens``) and, unless ``train_on_inputs``, on
the prompt: everything up to where generation would start, found by rendering the prompt alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion_datasets.experts.audio_lm import AudioLMFamily

IGNORE_INDEX = -100  # the label that the models' cross-entropy leaves out


def conversation(audio: np.ndarray, prompt: str, answer: str | None = None) -> list[dict[str, Any]]:
    """The chat of one row: the clip and ``prompt`` from the user, then ``answer`` (when given)."""
    turns: list[dict[str, Any]] = [{"role": "user", "content": [
        {"type": "audio", "audio": audio}, {"type": "text", "text": prompt}]}]
    if answer is not None:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return turns


class AudioLMCollator:
    """``{"audio", "prompt", "answer"}`` rows → the model's inputs (right-padded) and ``labels``."""

    def __init__(self, processor: Any, family: AudioLMFamily, sampling_rate: int,
                 train_on_inputs: bool = False) -> None:
        self.processor = processor
        self.sampling_rate = sampling_rate
        self.train_on_inputs = train_on_inputs
        vocabulary = processor.tokenizer.get_vocab()
        self.audio_ids = [vocabulary[token] for token in family.audio_tokens if token in vocabulary]
        if not self.audio_ids:
            raise ValueError(f"the processor's tokenizer has none of the family's audio tokens "
                             f"({', '.join(family.audio_tokens)})")

    def _render(self, conversations: Sequence[list[dict[str, Any]]], prompt_only: bool) -> Any:
        return self.processor.apply_chat_template(
            list(conversations), tokenize=True, return_dict=True, return_tensors="pt",
            add_generation_prompt=prompt_only,
            processor_kwargs={"text_kwargs": {"padding": True, "padding_side": "right"},
                              "sampling_rate": self.sampling_rate})

    def check(self, audio: np.ndarray) -> None:
        """Raise what the processor raises for ``audio`` (a clip it refuses)."""
        self._render([conversation(audio, "", "")], prompt_only=False)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self._render([conversation(row["audio"], row["prompt"], row["answer"]) for row in rows],
                             prompt_only=False)
        ids = batch["input_ids"]
        labels = ids.masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        labels[torch.isin(ids, torch.tensor(self.audio_ids))] = IGNORE_INDEX
        if not self.train_on_inputs:
            prompts = self._render([conversation(row["audio"], row["prompt"]) for row in rows], prompt_only=True)
            for index, length in enumerate(prompts["attention_mask"].sum(dim=1).tolist()):
                if not torch.equal(prompts["input_ids"][index, :length], ids[index, :length]):
                    raise ValueError("the chat template renders the prompt differently alone than before the "
                                     "answer: set train_on_inputs=true, or fix the template")
                labels[index, :length] = IGNORE_INDEX
        return {**batch, "labels": labels}
