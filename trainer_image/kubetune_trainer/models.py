"""Load the base config/tokenizer, and the task's model through its recipe.

Which class each task trains is declared in the task registry (`kubetune_api.tasks`,
`auto_class`) and loaded by the loader its recipe names (`task_recipes.py`,
`model_loaders.py`). This module does what every task shares: reading the base,
bounding maxlength, and the quantization keyword arguments.
"""

from __future__ import annotations

import sys
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from kubetune_trainer.labels import LabelScheme
from kubetune_trainer.model_loaders import LoadReport, LoadRequest, is_pair
from kubetune_trainer.peft_config import QuantizationPlan

# Tokenizers without a configured limit report a huge model_max_length.
UNBOUNDED_LENGTH = 1_000_000
FALLBACK_LENGTH = 512


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
    from kubetune_trainer.task_recipes import recipe_for

    report = report if report is not None else LoadReport()
    kwargs: dict[str, Any] = {"config": config}
    if is_pair(base):
        if plan.config is not None:
            report.warnings.append("quantize ignored: the base is an already loaded model")
    else:
        if plan.config is not None:
            kwargs["quantization_config"] = plan.config
            if plan.device_map is not None:
                kwargs["device_map"] = plan.device_map
            report.quantized = True
        if plan.warning:
            report.warnings.append(plan.warning)
    return recipe_for(task).load(LoadRequest(base, config, labels, tokenizer, kwargs, report))
