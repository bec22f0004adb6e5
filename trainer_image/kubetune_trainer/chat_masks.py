"""Render a conversation with its chat template and say which tokens the loss covers.

TRL (and transformers' `return_assistant_tokens_mask`) find the assistant tokens from
`{% generation %}` markers in the template. Most instruct models' templates have none,
so kubetune locates every message itself, by rendering prefixes of the conversation:

* the text a message adds is `render(messages[:i+1])` minus `render(messages[:i])`; for an
  assistant message the prompt part (its header, e.g. "<|im_start|>assistant\\n") is the
  generation prompt, `render(messages[:i], add_generation_prompt=True)`, so the span is
  the answer plus the template's end-of-turn text (what the model must learn to emit);
* that holds when the template is *prefix-preserving*: it renders earlier turns the
  same whatever follows. Each row checks it (every prefix must start the full text);
* character spans become a token mask through the tokenizer's offsets, on the same text
  and tokenization `apply_chat_template(tokenize=True)` gives (no special tokens added).

Templates that are not prefix-preserving (Qwen3 drops an empty reasoning block from
earlier turns, Mistral moves the system prompt into the last user turn, ...) cannot be
read this way. Their `{% generation %}` markers decide instead: the template's own, or
TRL's training version of a known template (`trl.chat_template_utils`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase
from trl.chat_template_utils import get_training_chat_template, has_generation_markers

Message = dict[str, Any]
MaskMethod = Literal["prefix-render", "generation-markers"]

# A conversation every chat template can render, to learn how a template behaves.
PROBE: tuple[Message, ...] = (
    {"role": "user", "content": "Is the sky blue?"},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "And the sea?"},
    {"role": "assistant", "content": "Often."},
)


class UnlocatableTurns(ValueError):
    """This conversation's trained messages cannot be told apart in the rendered text."""


@dataclass(frozen=True)
class Rendered:
    """One conversation as tokens, with a 0/1 mask of the tokens the loss covers."""

    input_ids: list[int]
    mask: list[int]


@dataclass(frozen=True)
class ChatRenderer:
    """A tokenizer and chat template, and how the trained turns are found in its output.

    `markers_template`: the template with `{% generation %}` markers used when prefixes
    do not locate the turns (the chat template itself, TRL's training version of it, or
    None when there is neither).
    """

    tokenizer: PreTrainedTokenizerBase
    template: str
    method: MaskMethod
    markers_template: str | None

    def render(self, messages: Sequence[Message], generation_prompt: bool = False) -> str:
        text = self.tokenizer.apply_chat_template(
            list(messages), chat_template=self.template, tokenize=False, add_generation_prompt=generation_prompt
        )
        assert isinstance(text, str)  # tokenize=False, one conversation
        return text

    def encode(self, messages: Sequence[Message], trained: Sequence[bool]) -> Rendered:
        """The conversation's tokens and loss mask; UnlocatableTurns when it cannot be masked."""
        if all(trained):
            ids = self._tokens(self.render(messages))[0]
            return Rendered(ids, [1] * len(ids))
        located = self.spans(messages, trained) if self.method == "prefix-render" else None
        if located is not None:
            text, spans = located
            ids, offsets = self._tokens(text)
            return Rendered(ids, _overlapping(offsets, spans))
        if self.markers_template is None:
            raise UnlocatableTurns(
                "the chat template renders earlier turns differently once later turns follow, so the "
                "turns to train on cannot be located; give a chat template with {% generation %} markers "
                "(chatTemplate / chat_template=) or train on every token (trainOnPrompt: true)"
            )
        return self._from_markers(messages, trained)

    def spans(self, messages: Sequence[Message], trained: Sequence[bool]) -> tuple[str, list[tuple[int, int]]] | None:
        """The rendered text and the character span of each trained message, or None when a
        prefix renders differently inside the whole conversation (not prefix-preserving)."""
        full = self.render(messages)
        spans = []
        for index, (message, train) in enumerate(zip(messages, trained, strict=True)):
            if not train:
                continue
            through = self.render(messages[: index + 1])
            before = self._before(messages[:index], generation_prompt=message["role"] == "assistant")
            if not full.startswith(through) or not through.startswith(before):
                return None
            # Whitespace after a turn (a newline after "<|im_end|>") is layout, not something to learn.
            spans.append((len(before), len(through.rstrip())))
        return full, spans

    def _before(self, messages: Sequence[Message], generation_prompt: bool) -> str:
        if messages or generation_prompt:
            try:
                return self.render(messages, generation_prompt)
            except Exception:
                if messages:
                    raise
        return ""

    def _tokens(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        # As apply_chat_template(tokenize=True): the template writes the special tokens itself.
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [tuple(pair) for pair in encoded["offset_mapping"]]

    def _from_markers(self, messages: Sequence[Message], trained: Sequence[bool]) -> Rendered:
        assert self.markers_template is not None
        out: Any = self.tokenizer.apply_chat_template(
            list(messages),
            chat_template=self.markers_template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        assistants = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
        if list(trained) == [message["role"] == "assistant" for message in messages]:
            return Rendered(ids, mask)
        # Only some assistant turns are trained: one marked run per assistant message, in order.
        runs = _runs(mask)
        if len(runs) != len(assistants) or any(trained[i] for i in range(len(messages)) if i not in assistants):
            raise UnlocatableTurns(
                "with this chat template only whole assistant turns can be told apart; per-message weights "
                "and completions that are not assistant turns need a prefix-preserving template"
            )
        keep = [0] * len(ids)
        for (start, end), index in zip(runs, assistants, strict=True):
            if trained[index]:
                keep[start:end] = [1] * (end - start)
        return Rendered(ids, keep)


def make_renderer(tokenizer: PreTrainedTokenizerBase, template: str) -> ChatRenderer:
    """How to mask with `template`: prefix rendering when it preserves prefixes, else its markers."""
    markers = template if has_generation_markers(template) else _trl_training_template(tokenizer, template)
    probe = ChatRenderer(tokenizer, template, "prefix-render", markers)
    try:
        preserving = probe.spans(PROBE, [message["role"] == "assistant" for message in PROBE]) is not None
    except Exception:  # a template that refuses a prefix of the probe (e.g. one ending with a user turn)
        preserving = False
    return probe if preserving else ChatRenderer(tokenizer, template, "generation-markers", markers)


def _trl_training_template(tokenizer: PreTrainedTokenizerBase, template: str) -> str | None:
    """TRL's marked-up version of a template it knows (Qwen3, Llama 3, ...), else None."""
    saved = tokenizer.chat_template
    try:
        tokenizer.chat_template = template
        return get_training_chat_template(tokenizer)
    except Exception:
        return None
    finally:
        tokenizer.chat_template = saved


def _overlapping(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """1 for each token whose characters overlap a span (spans and offsets both in order)."""
    mask, span = [], 0
    for start, end in offsets:
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        mask.append(int(span < len(spans) and end > spans[span][0] and end > start))
    return mask


def _runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of 1s."""
    runs, start = [], None
    for index, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = index
        elif not bit and start is not None:
            runs.append((start, index))
            start = None
    return runs
