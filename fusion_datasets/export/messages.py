"""SFT data for audio LMs as ms-swift and LLaMA-Factory read it: JSON lines of ``messages`` and ``audios``.

Each caption gives ``{"messages": [{"role": "user", "content": "<audio>PROMPT"}, {"role": "assistant",
"content": CAPTION}], "audios": [FILE]}``, its prompt one of :data:`CAPTION_PROMPTS` chosen by the clip's
id (the same clip, the same prompt, on every machine); each QA pair gives one line with its question as the
prompt and its answer as the reply.

Example:
    >>> caption_prompt("dog-1") in CAPTION_PROMPTS
    True
    >>> to_messages("<audio>Describe it.", "A dog barks.", "/clips/dog.wav")["audios"]
    ['/clips/dog.wav']
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256
from typing import Any

from fusion_datasets.export.base import PartResult
from fusion_datasets.export.lists import ListExporter

FILE = "messages.jsonl"
AUDIO_TOKEN = "<audio>"  # where the audio goes in the prompt, for both trainers
CAPTION_PROMPTS = (
    "Describe the audio in detail.",
    "What can be heard in this audio? Describe it in detail.",
    "Write a detailed caption for this audio clip.",
    "Describe the sounds in this recording, one by one.",
    "Give a detailed description of what this audio contains.",
)


def caption_prompt(clip_id: str) -> str:
    """The caption instruction of a clip: one of :data:`CAPTION_PROMPTS`, by the sha256 of its id."""
    return CAPTION_PROMPTS[int.from_bytes(sha256(clip_id.encode("utf-8")).digest()[:8], "big") % len(CAPTION_PROMPTS)]


def to_messages(prompt: str, answer: str, audio: str) -> dict[str, Any]:
    """One SFT line: the user's ``prompt`` (with :data:`AUDIO_TOKEN`), the assistant's ``answer``, the audio file."""
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "audios": [audio]}


def clip_messages(clip_id: str, caption: str, audio: str, pairs: Sequence[dict[str, str]] = ()
                  ) -> list[dict[str, Any]]:
    """A clip's SFT lines: its caption under :func:`caption_prompt`, then each QA pair (``question``, ``answer``)."""
    lines = [to_messages(AUDIO_TOKEN + caption_prompt(clip_id), caption, audio)]
    return lines + [to_messages(AUDIO_TOKEN + pair["question"], pair["answer"], audio) for pair in pairs]


class MessagesExporter(ListExporter):
    format = "messages"
    file = FILE

    def items(self, row: dict[str, Any], audio: str, duration: float, pairs: list[dict[str, str]],
              result: PartResult) -> list[dict[str, Any]]:
        result.written["clips"] += 1
        result.written["qa_pairs"] += len(pairs)
        return clip_messages(row["id"], row["caption"], audio, pairs)
