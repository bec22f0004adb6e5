"""Read one row of chat or prompt-completion data, and say exactly what is wrong with a bad one.

Chat rows hold a list of messages in the OpenAI format, `{"role": ..., "content": ...}`
with role system, user or assistant. An assistant message may carry `"weight": 0` (as in
OpenAI's fine-tuning format) to keep it as context without training on it; `weight: 1`
is the default. Prompt-completion rows hold a prompt and a completion, both text or
both lists of messages.

Every error names the data set (train / validation), the column and the row (counted
from 0), so a bad row in a million-row file is found at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetune_trainer.errors import DataError

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


@dataclass(frozen=True)
class Where:
    """Which data set, column and row a value came from: the start of every error message."""

    role: str
    column: str
    row: int

    def error(self, problem: str) -> DataError:
        return DataError(f"{self.role}: column {self.column!r}, row {self.row}: {problem}")


@dataclass(frozen=True)
class Conversation:
    """Messages to render with the chat template, and which of them the loss covers."""

    messages: list[Message]
    trained: list[bool]


def messages_of(value: Any, where: Where) -> tuple[list[Message], list[bool | None]]:
    """The messages of a chat value (role and content only), and each one's weight flag if given."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        shown = "text" if isinstance(value, str) else type(value).__name__
        raise where.error(f'expected a list of messages like {{"role": "user", "content": "..."}}, got {shown}')
    if not value:
        raise where.error("the conversation has no messages")
    messages, weights = [], []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise where.error(f"message {index} is not a {{role, content}} object: {message!r}")
        # Arrow gives every message of a column the same keys, None where a row had none.
        role, content = message.get("role"), message.get("content")
        if role is None:
            raise where.error(f"message {index} has no role; use one of: {', '.join(ROLES)}")
        if role not in ROLES:
            raise where.error(f"message {index} has role {role!r}; use one of: {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise where.error(f"message {index} ({role}) has no text content: {content!r}")
        messages.append({"role": role, "content": content})
        weights.append(_weight(message.get("weight"), role, index, where))
    return messages, weights


def _weight(value: Any, role: str, index: int, where: Where) -> bool | None:
    if value is None:
        return None
    if role != "assistant":
        raise where.error(f"message {index} ({role}) has a weight; only assistant messages take one")
    if value not in (0, 1):
        raise where.error(f"message {index} has weight {value!r}; use 0 (context only) or 1 (train on it)")
    return bool(value)


def chat_row(value: Any, where: Where, train_on_prompt: bool) -> Conversation:
    """A chat row: by default the loss covers the assistant messages (weight 0 ones excepted)."""
    messages, weights = messages_of(value, where)
    trained = [
        weight if weight is not None else (train_on_prompt or message["role"] == "assistant")
        for message, weight in zip(messages, weights, strict=True)
    ]
    if not any(trained):
        raise where.error("no assistant message to learn from (add one, or give one weight 1)")
    return Conversation(messages, trained)


def prompt_completion_row(
    prompt: Any, completion: Any, where: Where, completion_column: str, train_on_prompt: bool
) -> Conversation | tuple[str, str]:
    """A prompt-completion row: a Conversation when conversational, else (prompt, completion) text."""
    completion_where = Where(where.role, completion_column, where.row)
    if completion is None or completion == "" or completion == []:
        raise completion_where.error("the completion is missing")
    if prompt is None:
        raise where.error("the prompt is missing")
    if isinstance(prompt, str) and isinstance(completion, str):
        return prompt, completion
    if isinstance(prompt, str) or isinstance(completion, str):
        raise where.error(f"prompt and completion ({completion_column!r}) must both be text or both lists of messages")
    prompt_messages, _ = messages_of(prompt, where)
    completion_messages, weights = messages_of(completion, completion_where)
    trained = [train_on_prompt] * len(prompt_messages) + [weight is not False for weight in weights]
    if not any(trained):
        raise completion_where.error("every completion message has weight 0: nothing to learn from")
    return Conversation(prompt_messages + completion_messages, trained)


def text_of(value: Any, where: Where) -> str:
    """A text cell, or an error for a missing or non-text one."""
    if not isinstance(value, str):
        raise where.error(f"expected text, got {'nothing' if value is None else type(value).__name__}")
    return value
