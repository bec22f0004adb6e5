"""Packed and padded batches for causal LM fine-tuning, rows never attending to each other.

Packing (`packing: true`) puts several rows into one sequence of up to maxLength tokens,
best fit decreasing (TRL's `pack_dataset(strategy="bfd")`: no row is cut, bins fill up).
Each packed sequence keeps `seq_lengths`, and the collator turns them into position ids
that restart at every row, with no attention mask: transformers then builds attention
that stays inside each row (and no KV cache may be in use: the Trainer keeps use_cache
off). The label of each row's first token is ignored, so no row predicts from the one
before it.

How the batch is laid out depends on the model's attention kernel:

* flash attention (varlen kernels): the batch is flattened into one sequence with
  `cu_seq_lens`, TRL's padding-free collator, no padding at all;
* sdpa and eager (CPU, and GPUs without flash-attn): one packed sequence per batch row.
  Flattened, a dense kernel would compute attention over the whole batch at once
  ((batch x maxLength)^2 scores, almost all masked: 1.5-3x slower per step here), so TRL's
  collator is not used for them. Bins are nearly full, so the few pad tokens are the
  short tail bins' (and length grouping puts those together).

Without packing, rows are padded per batch (TRL's collator, with an attention mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel
from trl.data_utils import pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import pad

IGNORED = -100
SEQ_LENGTHS = "seq_lengths"


def pack(dataset: Dataset, maxlength: int, workers: int | None) -> Dataset:
    """Rows (input_ids, labels) packed into sequences of at most `maxlength` tokens, with seq_lengths."""
    map_kwargs: dict[str, Any] = {"num_proc": workers, "desc": "Packing"}
    return pack_dataset(dataset.select_columns(["input_ids", "labels"]), maxlength, "bfd", map_kwargs)


def uses_varlen_attention(model: PreTrainedModel) -> bool:
    """True when the model's attention is a flash kernel, which takes a flattened batch."""
    implementation = str(getattr(model.config, "_attn_implementation", "") or "")
    return "flash" in implementation


@dataclass
class PackedCollator:
    """Batches packed sequences (or plain rows, for evaluation) with per-row position ids."""

    pad_token_id: int
    flatten: bool = False  # set by bind(): flash attention takes one flattened sequence

    def bind(self, model: PreTrainedModel) -> None:
        self.flatten = uses_varlen_attention(model)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.flatten:
            return DataCollatorForLanguageModeling(self.pad_token_id, padding_free=True)(examples)
        lengths = [example.get(SEQ_LENGTHS) or [len(example["input_ids"])] for example in examples]
        positions = DataCollatorForLanguageModeling.get_position_ids_from_packed_seq_lengths(lengths)
        batch = {
            "input_ids": pad([torch.tensor(example["input_ids"]) for example in examples], self.pad_token_id),
            "labels": pad([torch.tensor(example["labels"]) for example in examples], IGNORED),
            "position_ids": pad(positions, 0),
        }
        # A row's first token would be predicted from the end of the row before it.
        batch["labels"][batch["position_ids"] == 0] = IGNORED
        return batch


def padded_collator(pad_token_id: int, pad_to_multiple_of: int | None) -> DataCollatorForLanguageModeling:
    """Rows padded to the batch's longest, with an attention mask, labels as prepared."""
    return DataCollatorForLanguageModeling(pad_token_id, pad_to_multiple_of=pad_to_multiple_of)
