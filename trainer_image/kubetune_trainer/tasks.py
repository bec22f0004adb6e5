"""Per-task data preparation: which columns a task reads, how rows become features, and
which collator batches them.

Unlike the seed, rows are never padded at tokenization time: the collators pad each
batch to its own longest row (dynamic padding), which is what makes length grouping
(`group_by_length=True`) pay off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from datasets import Dataset
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
)

from kubetune_api.training import TASK_NAMES
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.inputs import require_columns
from kubetune_trainer.labels import DEFAULT_MAX_LABELS, LabelScheme, infer_labels
from kubetune_trainer.questions import QuestionFeatures

LENGTH_COLUMN = "length"


def check_task(task: str) -> str:
    """The task, or a ConfigError listing the valid ones."""
    if task not in TASK_NAMES:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return task


def task_columns(task: str, columns: Sequence[str] | None) -> tuple[str | None, ...]:
    """The columns `task` reads, in its order, from the caller's `columns` or the defaults.

    text-classification: (text, text2 or None, label); language tasks: (text, text2 or
    None); question-answering: (question, context, answers); sequence-sequence: (source, target).
    """
    given = tuple(columns) if columns else None
    if task == "text-classification":
        if given is None:
            return ("text", None, "label")
        if len(given) == 2:
            return (given[0], None, given[1])
        if len(given) == 3:
            return given
        raise ConfigError(f"columns: text-classification reads (text, label) or (text1, text2, label), got {given}")
    if task in ("language-generation", "language-modeling", "token-detection"):
        if given is None:
            return ("text", None)
        if len(given) in (1, 2):
            return (given[0], given[1] if len(given) == 2 else None)
        raise ConfigError(f"columns: {task} reads (text,) or (text1, text2), got {given}")
    if task == "question-answering":
        if given is None:
            return ("question", "context", "answers")
        if len(given) == 3:
            return given
        raise ConfigError(f"columns: question-answering reads (question, context, answers), got {given}")
    if given is None:
        return ("source", "target")
    if len(given) == 2:
        return given
    raise ConfigError(f"columns: sequence-sequence reads (source, target), got {given}")


@dataclass
class CausalLMCollator:
    """Pads a batch and copies input_ids to labels, ignoring only the padding.

    transformers' LM collator masks labels by token id, so when pad == eos (GPT-2's
    usual fix) every EOS is dropped from the loss and the model never learns to stop.
    Masking by attention_mask keeps real EOS tokens.
    """

    tokenizer: PreTrainedTokenizerBase
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """A padded batch with labels = input_ids where attended, -100 elsewhere."""
        rows = [{k: v for k, v in row.items() if k not in ("special_tokens_mask", "labels")} for row in features]
        batch = self.tokenizer.pad(rows, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        labels = batch["input_ids"].clone()
        if "attention_mask" in batch:
            labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
        return batch


@dataclass
class Prepared:
    """Tokenized data, its collator, and (classification) the label scheme."""

    train: Dataset
    validation: Dataset | None
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]] | None
    labels: LabelScheme | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Classify:
    tokenizer: PreTrainedTokenizerBase
    text1: str
    text2: str | None
    label: str
    scheme: LabelScheme
    maxlength: int
    role: str

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        texts = (batch[self.text1], batch[self.text2]) if self.text2 else (batch[self.text1],)
        encoded = dict(self.tokenizer(*texts, truncation=True, max_length=self.maxlength))
        encoded["labels"] = self.scheme.encode(batch[self.label], self.role)
        return encoded


@dataclass(frozen=True)
class _Texts:
    """Tokenize texts and concatenate them into chunks of maxlength (the seed's `concat`)."""

    tokenizer: PreTrainedTokenizerBase
    text1: str
    text2: str | None
    maxlength: int
    append_eos: bool

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        texts = (batch[self.text1], batch[self.text2]) if self.text2 else (batch[self.text1],)
        encoded = dict(self.tokenizer(*texts, return_special_tokens_mask=True))
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
class _Sequences:
    tokenizer: PreTrainedTokenizerBase
    source: str
    target: str
    prefix: str | None
    maxlength: int

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        sources = [f"{self.prefix}{text}" if self.prefix else text for text in batch[self.source]]
        encoded = dict(self.tokenizer(sources, max_length=self.maxlength, truncation=True))
        targets = self.tokenizer(text_target=batch[self.target], max_length=self.maxlength, truncation=True)
        encoded["labels"] = targets["input_ids"]
        return encoded


def _map(
    dataset: Dataset, fn: Callable[[dict[str, list[Any]]], dict[str, list[Any]]], workers: int | None, lengths: bool
) -> Dataset:
    mapped = dataset.map(fn, batched=True, num_proc=workers, remove_columns=dataset.column_names, desc="Tokenizing")
    if lengths:
        # Precomputed lengths let LengthGroupedSampler skip a pass over the data set.
        mapped = mapped.map(lambda row: {LENGTH_COLUMN: len(row["input_ids"])}, num_proc=workers)
    return mapped


def prepare(
    task: str,
    train: Dataset,
    validation: Dataset | None,
    tokenizer: PreTrainedTokenizerBase,
    columns: Sequence[str] | None,
    maxlength: int,
    stride: int = 128,
    prefix: str | None = None,
    workers: int | None = None,
    pad_to_multiple_of: int | None = None,
    lengths: bool = False,
    known_labels: dict[str, int] | None = None,
    max_labels: int = DEFAULT_MAX_LABELS,
) -> Prepared:
    """Tokenize `train` (and `validation`) for `task` and pick the collator."""
    cols = task_columns(check_task(task), columns)
    require_columns(train, cols, "train", task)
    if validation is not None:
        require_columns(validation, cols, "validation", task)
    warnings: list[str] = []

    scheme: LabelScheme | None = None
    if task == "text-classification":
        text1, text2, label = cols
        assert text1 is not None and label is not None
        scheme = infer_labels(train, label, known_labels, max_labels)
        make: Callable[[str], Callable[..., Any]] = lambda role: _Classify(  # noqa: E731
            tokenizer, text1, text2, label, scheme, maxlength, role
        )
        collator: Any = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    elif task in ("language-generation", "language-modeling", "token-detection"):
        text1, text2 = cols
        assert text1 is not None
        generation = task == "language-generation"
        append_eos = generation and tokenizer.eos_token_id is not None
        make = lambda role: _Texts(tokenizer, text1, text2, maxlength, append_eos)  # noqa: E731
        if generation:
            collator = CausalLMCollator(tokenizer, pad_to_multiple_of)
        else:
            if tokenizer.mask_token is None:
                raise ConfigError(f"task {task} masks tokens, but the tokenizer has no mask token")
            collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, pad_to_multiple_of=pad_to_multiple_of)
    elif task == "question-answering":
        question, context, answers = cols
        assert question is not None and context is not None and answers is not None
        if stride >= maxlength // 2:
            # The tokenizer rejects windows that cannot advance; keep a usable overlap.
            warnings.append(f"stride {stride} is too large for maxlength {maxlength}; using {maxlength // 4}")
            stride = maxlength // 4
        make = lambda role: QuestionFeatures(tokenizer, question, context, answers, maxlength, stride)  # noqa: E731
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    else:
        source, target = cols
        assert source is not None and target is not None
        make = lambda role: _Sequences(tokenizer, source, target, prefix, maxlength)  # noqa: E731
        collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of)

    return Prepared(
        train=_map(train, make("train"), workers, lengths),
        validation=_map(validation, make("validation"), workers, lengths) if validation is not None else None,
        collator=collator,
        labels=scheme,
        warnings=tuple(warnings),
    )
