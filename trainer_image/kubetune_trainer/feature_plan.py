"""What a task's feature builder is given (`FeatureRequest`) and what it answers (`FeaturePlan`).

The builders themselves are the task recipes' (`task_recipes.py`, `sft_features.py`);
`task_recipes.prepare` runs a plan: map every row with the plan's encoder, let the plan
finish the mapped data (count dropped rows, pack), and hand over the collator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kubetune_trainer.labels import DEFAULT_MAX_LABELS, LabelScheme

MapFunction = Callable[..., dict[str, list[Any]]]
Collator = Callable[[list[dict[str, Any]]], dict[str, Any]]


@dataclass(frozen=True)
class SFTOptions:
    """language-generation's fine-tuning options (the spec's chatTemplate, trainOnPrompt, packing)."""

    chat_template: str | None = None
    train_on_prompt: bool = False
    packing: bool | None = None  # None: the data format's default (text: the seed's concatenation)


@dataclass(frozen=True)
class FeatureRequest:
    """What a task's feature builder gets: the tokenizer, its columns (by role) and options."""

    task: str
    tokenizer: PreTrainedTokenizerBase
    columns: tuple[str | None, ...]
    train: Dataset
    maxlength: int
    stride: int = 128
    prefix: str | None = None
    pad_to_multiple_of: int | None = None
    known_labels: dict[str, int] | None = None
    max_labels: int = DEFAULT_MAX_LABELS  # the largest classification head a run may build
    workers: int | None = None
    sft: SFTOptions = SFTOptions()


@dataclass
class SFTReport:
    """How a language-generation run read and batched its data (kubetune.json's "sft")."""

    format: str
    loss: str  # what the loss covers: "assistant turns", "completion" or "every token"
    masking: str | None  # how the prompt was told apart (chat_masks.MaskMethod, "prompt-prefix"), or None
    batching: str  # "packed", "padded" or "concatenated"
    chat_template_sha256: str | None = None
    chat_template_source: str | None = None
    dropped_rows: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "loss": self.loss,
            "masking": self.masking,
            "batching": self.batching,
            "chatTemplateSha256": self.chat_template_sha256,
            "chatTemplateSource": self.chat_template_source,
            "droppedRows": dict(self.dropped_rows),
        }


@dataclass
class FeaturePlan:
    """A task's answer: the map function per role ("train", "validation") and the collator.

    `indexed`: the map functions take (batch, row indices), to name rows in errors.
    `finish(original, mapped, role)`: the mapped data as the Trainer should see it.
    `bind(model)`: called once the model is loaded and on its device, for collators that depend on it.
    """

    encoder: Callable[[str], MapFunction]
    collator: Collator
    labels: LabelScheme | None = None
    warnings: list[str] = field(default_factory=list)
    indexed: bool = False
    finish: Callable[[Dataset, Dataset, str], Dataset] | None = None
    bind: Callable[[PreTrainedModel], None] | None = None
    sft: SFTReport | None = None
