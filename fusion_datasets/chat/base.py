"""The chat-backend protocol shared by the fusion, QA and judge steps.

A backend answers a batch of conversations; it never raises for one conversation's failure: that
conversation's :class:`Completion` carries the error instead, so a step can record it on its row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}
Conversation = list[Message]
# Called with a conversation's index and its answer; returns the next turn to send for it (a re-ask), or None.
FollowUp = Callable[[int, "Completion"], "Conversation | None"]


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

    def converse(self, conversations: Sequence[Conversation], follow_up: FollowUp, **params: Any) -> None:
        """Answer every conversation, and each follow-up turn ``follow_up`` returns for it, until it returns None.

        A server backend streams: a conversation's follow-up is sent as soon as its answer is in, while
        the others are still in flight. An in-process backend answers in rounds of ``generate``.
        """


def converse_in_rounds(backend: ChatBackend, conversations: Sequence[Conversation], follow_up: FollowUp,
                       **params: Any) -> None:
    """:meth:`ChatBackend.converse` as rounds of ``backend.generate`` over every conversation still open."""
    pending = dict(enumerate(conversations))
    while pending:
        indices = list(pending)
        completions = backend.generate([pending[index] for index in indices], **params)
        if len(completions) != len(indices):
            raise RuntimeError(f"{backend.model_id} answered {len(completions)} of {len(indices)} conversations")
        pending = {}
        for index, completion in zip(indices, completions):
            turn = follow_up(index, completion)
            if turn is not None:
                pending[index] = turn
