"""Which chat template a run uses, checked before any model loads, and kept with the tokenizer.

The template comes from the job (`chatTemplate`, or `chat_template=` in Python) or, when
it gives none, from the base model's tokenizer. Conversational data without either is a
configuration error. The chosen template is set on the tokenizer, which the Trainer
saves beside the model (chat_template.jinja), so the trained model chats the way it was
trained; its SHA-256 goes into kubetune.json.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from kubetune_trainer.chat_masks import PROBE
from kubetune_trainer.errors import ConfigError

TemplateSource = Literal["chatTemplate", "tokenizer"]


@dataclass(frozen=True)
class ChatTemplate:
    """The template text and where it came from."""

    text: str
    source: TemplateSource

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def tokenizer_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The tokenizer's own template (the default one of a set of named templates), if any."""
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def choose_template(tokenizer: PreTrainedTokenizerBase, given: str | None, needed_for: str) -> ChatTemplate:
    """The template to use, set on the tokenizer; ConfigError when there is none or it does not render.

    `needed_for` says what needs it, e.g. "train: column 'messages' holds conversations".
    """
    if given:
        chosen = ChatTemplate(given, "chatTemplate")
    else:
        own = tokenizer_template(tokenizer)
        if own is None:
            raise ConfigError(
                f"{needed_for}, but no chat template was given and the base model's tokenizer has none; "
                "set chatTemplate in the spec (chat_template= in Python) to a Jinja chat template"
            )
        chosen = ChatTemplate(own, "tokenizer")
    try:
        tokenizer.apply_chat_template(list(PROBE), chat_template=chosen.text, tokenize=False)
    except Exception as error:
        where = "chatTemplate" if chosen.source == "chatTemplate" else "the tokenizer's chat template"
        raise ConfigError(f"{where} does not render a user/assistant conversation: {error}") from None
    tokenizer.chat_template = chosen.text
    return chosen
