"""`Dataset.map` functions that turn rows into model features, and the causal LM collator.

Rows are never padded here: the collators pad each batch to its own longest row
(dynamic padding), which is what makes length grouping (`group_by_length=True`) pay off.
Question-answering windows live in `questions.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

from transformers import PreTrainedTokenizerBase

from kubetune_trainer.labels import LabelScheme

Batch = dict[str, list[Any]]


def texts_of(batch: Batch, text1: str, text2: str | None) -> tuple[list[Any], ...]:
    """The batch's texts, as the tokenizer takes them: one column, or a pair of columns."""
    return (batch[text1], batch[text2]) if text2 else (batch[text1],)


@dataclass(frozen=True)
class Classify:
    """Tokenize texts (or text pairs) and encode their labels."""

    tokenizer: PreTrainedTokenizerBase
    text1: str
    text2: str | None
    label: str
    scheme: LabelScheme
    maxlength: int
    role: str

    def __call__(self, batch: Batch) -> Batch:
        encoded = dict(
            self.tokenizer(*texts_of(batch, self.text1, self.text2), truncation=True, max_length=self.maxlength)
        )
        encoded["labels"] = self.scheme.encode(batch[self.label], self.role)
        return encoded


@dataclass(frozen=True)
class ConcatenatedTexts:
    """Tokenize texts and concatenate them into chunks of maxlength (the seed's `concat`)."""

    tokenizer: PreTrainedTokenizerBase
    text1: str
    text2: str | None
    maxlength: int
    append_eos: bool

    def __call__(self, batch: Batch) -> Batch:
        encoded = dict(self.tokenizer(*texts_of(batch, self.text1, self.text2), return_special_tokens_mask=True))
        if self.append_eos:
            # Causal LM: end each text with EOS so the model learns where texts stop.
            eos = self.tokenizer.eos_token_id
            for key, rows in encoded.items():
                fill = eos if key == "input_ids" else (1 if key in ("attention_mask", "special_tokens_mask") else 0)
                encoded[key] = [row if row and row[-1] == eos and key == "input_ids" else [*row, fill] for row in rows]
        joined = {key: list(chain(*rows)) for key, rows in encoded.items()}
        total = len(joined["input_ids"])
        if total >= self.maxlength:
            total = (total // self.maxlength) * self.maxlength  # drop the ragged tail, as the seed
        step = self.maxlength
        return {key: [values[i : i + step] for i in range(0, total, step)] for key, values in joined.items()}


@dataclass(frozen=True)
class Sequences:
    """Tokenize sources (with the prefix) and their targets as labels."""

    tokenizer: PreTrainedTokenizerBase
    source: str
    target: str
    prefix: str | None
    maxlength: int

    def __call__(self, batch: Batch) -> Batch:
        sources = [f"{self.prefix}{text}" if self.prefix else text for text in batch[self.source]]
        encoded = dict(self.tokenizer(sources, max_length=self.maxlength, truncation=True))
        targets = self.tokenizer(text_target=batch[self.target], max_length=self.maxlength, truncation=True)
        encoded["labels"] = targets["input_ids"]
        return encoded


@dataclass
class CausalLMCollator:
    """Pads a batch and copies input_ids to labels, ignoring only the padding.

    transformers' LM collator masks labels by token id, so when pad == eos (GPT-2's
    usual fix) every EOS is dropped from the loss and the model never learns to stop.
    Masking by attention_mask keeps real EOS tokens.
    """

    tokenizer: PreTrainedTokenizerBase
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        """A padded batch (a BatchEncoding) with labels = input_ids where attended, -100 elsewhere."""
        rows = [{k: v for k, v in row.items() if k not in ("special_tokens_mask", "labels")} for row in features]
        batch = self.tokenizer.pad(rows, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        labels = batch["input_ids"].clone()
        if "attention_mask" in batch:
            labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
        return batch
