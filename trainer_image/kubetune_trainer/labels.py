"""Work out what kind of labels a text-classification data set has, and encode them.

The seed counted distinct values and handed raw values to the model, so string labels
crashed and a label column not called `label` was dropped. Here:

* a list/vector per row: multi-label (one sigmoid per position, float targets);
* any non-integer number: regression (one output, float target);
* strings (or negative integers): categories, encoded to ids in sorted order, with the
  names kept for the model config's id2label / label2id. When the base model already
  names every label (a model fine-tuned before), its ids are kept;
* non-negative integers (and bools): class ids as given; num_labels = max + 1.

A head has at most `max_labels` outputs (DEFAULT_MAX_LABELS unless HFTrainer's
`maxlabels` or the runner's KUBETUNE_MAX_LABELS says otherwise). More is nearly always
a column of ids (user or product ids, timestamps) taken for class ids, or the wrong
column: a head of a billion outputs would fail much later, as an out-of-memory that a
retry cannot fix. It is refused as invalid data instead, naming what was found.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from datasets import Dataset

from kubetune_trainer.errors import ConfigError, DataError

# Larger than any common text classification set; the head costs about
# 16 bytes x hidden size x labels in training (weights, gradients, Adam).
DEFAULT_MAX_LABELS = 10_000
ENV_MAX_LABELS = "KUBETUNE_MAX_LABELS"
_LIMIT_NAMES = f"{ENV_MAX_LABELS} / HFTrainer maxlabels"

LabelKind = Literal["single", "multi", "regression"]

PROBLEM_TYPES: dict[LabelKind, str] = {
    "single": "single_label_classification",
    "multi": "multi_label_classification",
    "regression": "regression",
}


@dataclass(frozen=True)
class LabelScheme:
    """How labels map to model outputs."""

    kind: LabelKind
    num_labels: int
    names: tuple[str, ...] | None = None  # id -> name when labels are encoded categories

    @property
    def problem_type(self) -> str:
        """The transformers `config.problem_type` for this kind of label."""
        return PROBLEM_TYPES[self.kind]

    @property
    def id2label(self) -> dict[int, str] | None:
        """Names by id, for the model config (None: keep the config's own)."""
        return dict(enumerate(self.names)) if self.names is not None else None

    @property
    def label2id(self) -> dict[str, int] | None:
        """Ids by name, for the model config and for encoding."""
        return {name: index for index, name in enumerate(self.names)} if self.names is not None else None

    def encode(self, values: Sequence[Any], role: str = "train") -> list[Any]:
        """Model targets for raw label values; `DataError` for a value that does not fit."""
        if self.kind == "multi":
            return [_vector(value, self.num_labels, role) for value in values]
        if self.kind == "regression":
            return [_number(value, role) for value in values]
        if self.names is not None:
            index = self.label2id or {}
            encoded = []
            for value in values:
                key = _name(value)
                if key not in index:
                    raise DataError(
                        f"{role}: label {value!r} does not occur in the training data; known labels: {list(index)}"
                    )
                encoded.append(index[key])
            return encoded
        encoded = []
        for value in values:
            number = _number(value, role)
            if number != int(number) or not 0 <= number < self.num_labels:
                raise DataError(f"{role}: label {value!r} is not a class id in 0..{self.num_labels - 1}")
            encoded.append(int(number))
        return encoded


def _name(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _number(value: Any, role: str) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{role}: label {value!r} is not a number") from None
    if math.isnan(number):
        raise DataError(f"{role}: a label is missing (NaN)")
    return number


def _vector(value: Any, size: int, role: str) -> list[float]:
    if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
        raise DataError(f"{role}: multi-label data needs a list of {size} values per row, got {value!r}")
    items = list(value.tolist() if hasattr(value, "tolist") else value)
    if len(items) != size:
        raise DataError(f"{role}: label vectors must all have {size} values, got {len(items)}: {items}")
    return [_number(item, role) for item in items]


def max_labels_from(environ: Mapping[str, str]) -> int:
    """The head size limit set in KUBETUNE_MAX_LABELS (DEFAULT_MAX_LABELS when unset)."""
    text = environ.get(ENV_MAX_LABELS, "").strip()
    if not text:
        return DEFAULT_MAX_LABELS
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 2:
        raise ConfigError(
            f"{ENV_MAX_LABELS}={text!r}: expected a whole number of labels, at least 2 (default {DEFAULT_MAX_LABELS})"
        )
    return limit


def infer_labels(
    dataset: Dataset,
    column: str,
    known: Mapping[str, int] | None = None,
    max_labels: int = DEFAULT_MAX_LABELS,
) -> LabelScheme:
    """The label scheme of `dataset[column]` (the training data).

    `known`: the base model's label2id; used when it names every string label, so a
    model trained before keeps its label ids. `max_labels`: the largest head allowed.
    """
    values = dataset[column]
    if any(value is None for value in values):
        raise DataError(f"train: column {column!r} has rows without a label")
    first = values[0]
    if isinstance(first, (list, tuple)) or hasattr(first, "tolist"):
        return LabelScheme("multi", len(_vector(first, len(first), "train")))
    if any(isinstance(value, str) for value in values):
        if not all(isinstance(value, str) for value in values):
            raise DataError(f"train: column {column!r} mixes text and numeric labels")
        return _categories({_name(value) for value in values}, known, column, max_labels)
    numbers = [_number(value, "train") for value in values]
    if any(number != int(number) for number in numbers):
        return LabelScheme("regression", 1)
    if min(numbers) < 0:
        # Negative ids cannot index logits: treat them as named categories.
        return _categories({_name(int(number)) for number in numbers}, known, column, max_labels)
    largest = int(max(numbers))
    if largest + 1 > max_labels:
        distinct = len(set(numbers))
        raise DataError(
            f"train: label column {column!r} holds whole numbers up to {largest} ({distinct} distinct values), "
            f"read as class ids 0..{largest}: a head of {largest + 1} outputs, more than the limit of {max_labels} "
            f"({_LIMIT_NAMES}). If the numbers are ids of categories, map them to 0..{distinct - 1} or make them "
            f"text (e.g. 'c{largest}'), and kubetune numbers the {distinct} categories itself; if they are a "
            "quantity to predict, kubetune trains a regression on fractional numbers; if it is the wrong column, "
            "name the columns in data.columns (the label comes last); if there are that many classes, raise the limit"
        )
    return LabelScheme("single", max(2, largest + 1))


def _categories(names: set[str], known: Mapping[str, int] | None, column: str, max_labels: int) -> LabelScheme:
    if known and names <= set(known) and sorted(known.values()) == list(range(len(known))):
        ordered = tuple(sorted(known, key=lambda name: known[name]))
        return LabelScheme("single", len(ordered), ordered)
    if len(names) < 2:
        raise DataError(f"train: every row has the label {next(iter(names))!r}; a classifier needs at least two")
    if len(names) > max_labels:
        examples = ", ".join(repr(name) for name in sorted(names)[:3])
        raise DataError(
            f"train: label column {column!r} has {len(names)} distinct values ({examples}, ...), more than the "
            f"limit of {max_labels} labels ({_LIMIT_NAMES}): if it is the wrong column (free text, ids), name the "
            "columns in data.columns (the label comes last); if there are that many classes, raise the limit"
        )
    ordered = tuple(sorted(names))
    return LabelScheme("single", len(ordered), ordered)
