"""A tiny Llama-architecture chat model and chat data for the SFT tests (nothing downloaded).

The tokenizer is word-level over `tiny_models.WORDS` plus four chat tokens; the chat
template is ours (ChatML-like, no `{% generation %}` markers, like most real ones). The
data is a fixed question -> answer mapping the model can learn in a few seconds.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tiny_models import WORDS, save_tiny_llama
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")

# Every turn is "<|role|> content <|end|>"; the generation prompt is "<|assistant|>".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|> ' + message['content'] + ' <|end|> ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)
# The same rendering, with the assistant answers marked up as TRL and transformers expect.
MARKED_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|assistant|> ' }}"
    "{% generation %}{{ message['content'] + ' <|end|> ' }}{% endgeneration %}"
    "{% else %}{{ '<|' + message['role'] + '|> ' + message['content'] + ' <|end|> ' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)
# Not prefix-preserving: the system prompt goes into the last user turn (as Mistral's does).
SYSTEM_LAST_TEMPLATE = (
    "{{ bos_token }}{% set system = messages | selectattr('role', 'equalto', 'system') | list %}"
    "{% set turns = messages | rejectattr('role', 'equalto', 'system') | list %}"
    "{% set last_user = (turns | selectattr('role', 'equalto', 'user') | list | last) %}"
    "{% for message in turns %}{% if message is sameas last_user and system %}"
    "{{ '<|user|> ' + system[0]['content'] + ' ' + message['content'] + ' <|end|> ' }}"
    "{% else %}{{ '<|' + message['role'] + '|> ' + message['content'] + ' <|end|> ' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)

THINGS = ("cat", "dog", "kitten", "puppy", "sofa", "mat", "house", "garden", "box", "bed")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown")
FACTS = dict(zip(THINGS, COLORS, strict=True))


def chat_tokenizer(max_length: int = 128, template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    specials = ("<pad>", "<s>", "</s>", "<unk>")
    vocab = {token: index for index, token in enumerate((*specials, *WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok.add_special_tokens(list(CHAT_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=max_length,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|end|>",  # the end of a turn is where generation stops, as in ChatML models
        unk_token="<unk>",
    )
    tokenizer.chat_template = template
    return tokenizer


def build_chat_llama(path: Path, max_length: int = 128, template: str | None = CHAT_TEMPLATE) -> Path:
    """A 2-layer Llama (hidden 64) with the chat tokenizer; `template=None` saves none."""
    return save_tiny_llama(path, chat_tokenizer(max_length, template), max_length)


def question(thing: str) -> str:
    return f"what color is the {thing} ?"


def answer(thing: str) -> str:
    return f"the {thing} is {FACTS[thing]}"


def chat_rows(repeat: int = 6, seed: int = 0, system: bool = True) -> list[dict[str, Any]]:
    """Conversations over FACTS: one or two question/answer turns each, some with a system prompt."""
    rng = random.Random(seed)
    rows = []
    for _ in range(repeat):
        for thing in THINGS:
            messages: list[dict[str, str]] = []
            if system and rng.random() < 0.5:
                messages.append({"role": "system", "content": "answer with a color"})
            messages += [{"role": "user", "content": question(thing)}, {"role": "assistant", "content": answer(thing)}]
            if rng.random() < 0.4:
                other = rng.choice(THINGS)
                messages += [
                    {"role": "user", "content": question(other)},
                    {"role": "assistant", "content": answer(other)},
                ]
            rows.append({"messages": messages})
    return rows
