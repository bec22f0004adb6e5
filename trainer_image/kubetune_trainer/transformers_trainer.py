"""transformers' Trainer with what kubetune adds to every run.

* Packed data keeps its `seq_lengths` column (the collator turns it into per-row position
  ids); the Trainer would otherwise drop it as "not a model input" (TRL's SFTTrainer keeps
  it the same way).
* `group_by_length` sorts rows over 50 batches on any data set, and shuffles the batches
  (see length_batches.py).
* Tasks whose registry entry names the "perplexity" suite get `eval_perplexity`
  (exp of the eval loss) in the same log record as the loss, so progress reports, the
  run's metrics and kubetune.json all carry it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from kubetune_trainer.length_batches import EpochLengthGroupedSampler
from kubetune_trainer.packing import SEQ_LENGTHS

PERPLEXITY_SUITE = "perplexity"
# exp() of a loss above this overflows a float: such a model has no meaningful perplexity.
_MAX_LOG_PERPLEXITY = 700.0


class KubetuneTrainer(Trainer):
    """A Trainer that keeps packing metadata and reports perplexity when asked."""

    def __init__(self, *args: Any, perplexity: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.perplexity = perplexity

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            super()._set_signature_columns_if_needed()
            assert self._signature_columns is not None
            self._signature_columns.append(SEQ_LENGTHS)

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> torch.utils.data.Sampler | None:
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return EpochLengthGroupedSampler.replacing(sampler)
        return sampler

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # evaluate() returns the dict it logs: adding to it here reaches the caller too.
        loss = logs.get("eval_loss")
        if self.perplexity and isinstance(loss, (int, float)) and loss < _MAX_LOG_PERPLEXITY:
            logs["eval_perplexity"] = math.exp(loss)
        super().log(logs, start_time)
