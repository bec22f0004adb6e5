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

Not every model honours per-row position ids: transformers builds the block-diagonal mask
only where a model hands `position_ids` to its mask builder (Llama, GPT-2, Qwen, Mistral,
... in 5.24), not OPT, Bloom or Mamba, whose rows would silently see each other. So once the
model is on its device, `bind` runs it on one packed sequence and on its rows alone (with
the run's attention and autocast); a model whose outputs differ is refused (ConfigError
naming packing) before training starts.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel
from trl.data_utils import pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
from trl.trainer.utils import pad

from kubetune_trainer.errors import ConfigError

logger = logging.getLogger(__name__)

IGNORED = -100
SEQ_LENGTHS = "seq_lengths"
# The probe's two rows: long enough that the second row's outputs depend on what precedes it.
_PROBE_LENGTHS = (8, 4)
# A packed row may differ from the row alone by rounding only: far less than the
# difference attending across rows makes (measured on the same model and inputs).
_CROSSING_SHARE = 0.05
_ROUNDING_STEPS = 4.0


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
        problem = packing_problem(model, self)
        if problem is not None:
            raise ConfigError(
                f"packing: {problem}, so packed rows would attend to each other; set packing: false "
                "(packing=False), or use a model whose attention takes per-row position ids "
                "(Llama, Qwen, Mistral, GPT-2)"
            )

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


def packing_problem(model: PreTrainedModel, collator: PackedCollator) -> str | None:
    """Why `model` would let packed rows see each other, or None when it keeps them apart.

    Runs the model on one packed sequence of two rows, on the second row alone, and on
    the two rows concatenated without per-row positions (the control: attention that
    crosses rows). The packed row must match the row alone far more closely than the
    control does.
    """
    parameters = inspect.signature(model.forward).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if "position_ids" not in parameters and not takes_kwargs:
        return f"{type(model).__name__} takes no position_ids"
    vocab = int(model.config.get_text_config().vocab_size)
    first, second = ([(3 + 7 * i + 11 * n) % vocab for i in range(n)] for n in _PROBE_LENGTHS)
    batch = collator([{"input_ids": first + second, "labels": first + second, SEQ_LENGTHS: list(_PROBE_LENGTHS)}])
    inputs = {
        key: value.to(model.device) if isinstance(value, torch.Tensor) else value  # flattened: max lengths are ints
        for key, value in batch.items()
        if key not in ("labels", SEQ_LENGTHS)
    }
    start = len(first)
    was_training = model.training
    model.eval()  # no dropout in the comparison
    try:
        with torch.no_grad():
            logits = model(**inputs, use_cache=False).logits
            alone = model(input_ids=torch.tensor([second], device=model.device), use_cache=False).logits[0].float()
            crossing = model(input_ids=inputs["input_ids"], use_cache=False).logits[0, start:].float()
    except Exception as error:  # e.g. ZeRO-3's partitioned weights: the Trainer's engine has to run it
        logger.warning("packing: could not check that packed rows stay apart on this model (%s)", error)
        return None
    finally:
        model.train(was_training)
    leak = (logits[0, start:].float() - alone).abs().max().item()
    crossed = (crossing - alone).abs().max().item()
    # In the precision the logits came out in (bf16 under autocast, float32 on a CPU).
    rounding = _ROUNDING_STEPS * torch.finfo(logits.dtype).eps * (1.0 + alone.abs().max().item())
    if leak <= max(_CROSSING_SHARE * crossed, rounding):
        return None
    return f"{type(model).__name__} ({model.config._attn_implementation} attention) mixes the rows of a packed sequence"
