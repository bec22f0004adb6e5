"""Load the base config/tokenizer and the task's model class.

Task -> class: language-generation AutoModelForCausalLM, language-modeling
AutoModelForMaskedLM, question-answering AutoModelForQuestionAnswering,
sequence-sequence AutoModelForSeq2SeqLM, token-detection TokenDetection (masked LM +
AutoModelForPreTraining), otherwise AutoModelForSequenceClassification.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kubetune_trainer.labels import LabelScheme
from kubetune_trainer.peft_config import QuantizationPlan
from kubetune_trainer.token_detection import TokenDetection

logger = logging.getLogger(__name__)

# Tokenizers without a configured limit report a huge model_max_length.
UNBOUNDED_LENGTH = 1_000_000
FALLBACK_LENGTH = 512

AUTO_CLASSES: dict[str, Any] = {
    "language-generation": AutoModelForCausalLM,
    "language-modeling": AutoModelForMaskedLM,
    "question-answering": AutoModelForQuestionAnswering,
    "sequence-sequence": AutoModelForSeq2SeqLM,
    "text-classification": AutoModelForSequenceClassification,
}


def is_pair(base: Any) -> bool:
    """True for a `(model, tokenizer)` pair from a previous run (not a pair of strings)."""
    return isinstance(base, (list, tuple)) and len(base) == 2 and not isinstance(base[0], str)


def load_base(base: Any, maxlength: int | None) -> tuple[PretrainedConfig, PreTrainedTokenizerBase, int]:
    """(config, tokenizer, maxlength) for a hub id, local path or (model, tokenizer) pair."""
    if is_pair(base):
        model, tokenizer = base
        config = model.config
    else:
        config = AutoConfig.from_pretrained(base)
        tokenizer = AutoTokenizer.from_pretrained(base)

    limit = tokenizer.model_max_length
    if not limit or limit > UNBOUNDED_LENGTH:
        # Unbounded tokenizer: fall back to the model's positions so rows cannot overflow them.
        limit = next(
            (
                getattr(config, name)
                for name in ("max_position_embeddings", "n_positions", "max_length")
                if isinstance(getattr(config, name, None), int)
            ),
            FALLBACK_LENGTH,
        )
        tokenizer.model_max_length = limit
    return config, tokenizer, min(maxlength or sys.maxsize, limit)


@dataclass
class LoadReport:
    """What happened while loading, for the caller's warnings."""

    warnings: list[str] = field(default_factory=list)
    quantized: bool = False


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
    old = (dict(config.id2label), dict(config.label2id)) if keep_names else None
    config.num_labels = count
    if scheme is not None:
        config.problem_type = scheme.problem_type
        if scheme.names is not None:
            config.id2label = scheme.id2label
            config.label2id = scheme.label2id
        elif old is not None:
            config.id2label, config.label2id = old
    return resized


def load_model(
    task: str,
    base: Any,
    config: PretrainedConfig,
    labels: int | LabelScheme | None,
    tokenizer: PreTrainedTokenizerBase,
    plan: QuantizationPlan,
    report: LoadReport | None = None,
) -> PreTrainedModel:
    """The model to train for `task`, from `base` (path, hub id or (model, tokenizer))."""
    report = report if report is not None else LoadReport()
    name = type(base[0]).__name__ if is_pair(base) else str(base)
    resized = apply_labels(config, labels, name, report) if task == "text-classification" else False

    if is_pair(base):
        model = base[0]
        if plan.config is not None:
            report.warnings.append("quantize ignored: the base is an already loaded model")
        if resized:
            # A model from an earlier run with another label count: swap in a fresh head.
            with tempfile.TemporaryDirectory() as folder:
                model.save_pretrained(folder)
                model = AutoModelForSequenceClassification.from_pretrained(
                    folder, config=config, ignore_mismatched_sizes=True
                )
        return model

    kwargs: dict[str, Any] = {"config": config}
    if plan.config is not None:
        kwargs["quantization_config"] = plan.config
        if plan.device_map is not None:
            kwargs["device_map"] = plan.device_map
        report.quantized = True
    if plan.warning:
        report.warnings.append(plan.warning)

    if task == "token-detection":
        return TokenDetection(
            AutoModelForMaskedLM.from_pretrained(base, **kwargs),
            AutoModelForPreTraining.from_pretrained(base, **kwargs),
            tokenizer,
        )
    if task == "text-classification":
        # A head of another size (or none) is created fresh instead of failing to load.
        kwargs["ignore_mismatched_sizes"] = True
    return AUTO_CLASSES.get(task, AutoModelForSequenceClassification).from_pretrained(base, **kwargs)
