"""The chat-backend protocol shared by the fusion, QA and judge steps.

A backend answers a batch of conversations; it never raises for one conversation's failure: that
conversation's :class:`Completion` carries the error instead, so a step can record it on its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}
Conversation = list[Message]


@dataclass(frozen=True)
class Completion:
    """One conversation's answer, or the reason there is none."""

    text: str | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that answers chat conversations: in-process transformers or an OpenAI-compatible server."""

    @property
    def model_id(self) -> str:
        """The model that answers, for provenance."""

    def generate(self, conversations: Sequence[Conversation], **params: Any) -> list[Completion]:
        """One :class:`Completion` per conversation, in order.

        ``params``: ``max_new_tokens``, ``temperature``, ``seed``.
        """
