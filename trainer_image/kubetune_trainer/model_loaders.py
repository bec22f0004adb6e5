"""How each task's model is loaded: the task recipes (`task_recipes.py`) name one of these.

A loader gets a `LoadRequest` (the base, its config, the label scheme, the tokenizer and
the quantization keyword arguments) and returns the model to train. The base may be a
model already in memory (a `(model, tokenizer)` pair from an earlier run); then nothing
is read from disk unless the task has to change the model (a classification head of
another size).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import transformers
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kubetune_trainer.labels import LabelScheme
from kubetune_trainer.token_detection import TokenDetection

logger = logging.getLogger(__name__)


def is_pair(base: Any) -> bool:
    """True for a `(model, tokenizer)` pair from a previous run (not a pair of strings)."""
    return isinstance(base, (list, tuple)) and len(base) == 2 and not isinstance(base[0], str)


@dataclass
class LoadReport:
    """What happened while loading, for the caller's warnings."""

    warnings: list[str] = field(default_factory=list)
    quantized: bool = False


@dataclass
class LoadRequest:
    """Everything a loader may need; `kwargs` go to `from_pretrained` (config, quantization)."""

    base: Any  # a path or hub id, or a (model, tokenizer) pair
    config: PretrainedConfig
    labels: int | LabelScheme | None
    tokenizer: PreTrainedTokenizerBase
    kwargs: dict[str, Any]
    report: LoadReport

    @property
    def name(self) -> str:
        return type(self.base[0]).__name__ if is_pair(self.base) else str(self.base)


Loader = Callable[[LoadRequest], PreTrainedModel]


def auto_class(name: str) -> Any:
    """The transformers Auto class called `name` (the task registry names them as strings)."""
    return getattr(transformers, name)


def pretrained(class_name: str) -> Loader:
    """A loader for `class_name.from_pretrained`; a loaded pair's model is used as it is."""

    def load(request: LoadRequest) -> PreTrainedModel:
        if is_pair(request.base):
            return request.base[0]
        return auto_class(class_name).from_pretrained(request.base, **request.kwargs)

    return load


def apply_labels(config: PretrainedConfig, labels: int | LabelScheme | None, base: str, report: LoadReport) -> bool:
    """Set num_labels (and names, problem type) on `config`; True when the head changes size."""
    if labels is None:
        return False
    scheme = labels if isinstance(labels, LabelScheme) else None
    count = scheme.num_labels if scheme else int(labels)  # type: ignore[arg-type]
    had_head = any(name.endswith("ForSequenceClassification") for name in (config.architectures or []))
    resized = count != config.num_labels
    if resized and had_head:
        message = (
            f"base {base} has a {config.num_labels}-label classification head; "
            f"training a new {count}-label head instead"
        )
        logger.warning(message)
        report.warnings.append(message)
    keep_names = not resized and scheme is not None and scheme.names is None
    # transformers types these loosely (dicts of either key type, or None): copy them as they are.
    old: tuple[Any, Any] | None = (dict(config.id2label or {}), dict(config.label2id or {})) if keep_names else None
    config.num_labels = count
    if scheme is not None:
        config.problem_type = scheme.problem_type  # type: ignore[assignment]  # one of the Literal's values
        if scheme.names is not None:
            config.id2label = scheme.id2label
            config.label2id = scheme.label2id
        elif old is not None:
            config.id2label, config.label2id = old
    return resized


def load_classifier(request: LoadRequest) -> PreTrainedModel:
    """A sequence classifier with as many outputs as the labels need."""
    resized = apply_labels(request.config, request.labels, request.name, request.report)
    if is_pair(request.base):
        model = request.base[0]
        if resized:
            # A model from an earlier run with another label count: swap in a fresh head.
            with tempfile.TemporaryDirectory() as folder:
                model.save_pretrained(folder)
                model = AutoModelForSequenceClassification.from_pretrained(
                    folder, config=request.config, ignore_mismatched_sizes=True
                )
        return model
    # A head of another size (or none) is created fresh instead of failing to load.
    return AutoModelForSequenceClassification.from_pretrained(
        request.base, ignore_mismatched_sizes=True, **request.kwargs
    )


def load_token_detection(request: LoadRequest) -> PreTrainedModel:
    """ELECTRA-style generator (masked LM) + discriminator, both from the base."""
    if is_pair(request.base):
        return request.base[0]
    return TokenDetection(
        AutoModelForMaskedLM.from_pretrained(request.base, **request.kwargs),
        AutoModelForPreTraining.from_pretrained(request.base, **request.kwargs),
        request.tokenizer,
    )
