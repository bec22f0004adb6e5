"""Batches of rows of similar length, drawn from the whole epoch rather than a slice of it.

transformers' `group_by_length` sorts rows inside "megabatches" of at most 50 batches,
and makes at least 4 of them, so on a small data set it sorts only a quarter of it at a
time: on 256 long-tail rows (5-200 words) with batch 16 a batch is 67% real tokens.
Sorting megabatches of 50 batches whatever the data set's size (one megabatch for up to
800 rows at batch 16) makes it 90%, and every batch still holds
`per_device_train_batch_size` rows (bench/trainer_vs_txtai.py --workload long-tail).

Sorting more rows together makes each batch's rows more alike in length, so the
batches are then shuffled: transformers yields each megabatch's batches longest first,
which over a small data set would train on long rows first and short rows last every
epoch. The full batch holding the longest row comes first, as in transformers, so a run
that does not fit in memory fails on its first step; a short last batch stays last.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

# transformers' own upper bound on a megabatch (get_length_grouped_indices).
MEGABATCH_BATCHES = 50


def length_grouped_order(lengths: list[int], batch_size: int, generator: torch.Generator | None) -> list[int]:
    """Row indices in training order: each `batch_size` slice holds rows of similar length."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = MEGABATCH_BATCHES * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        megabatch = sorted(order[start : start + span], key=lambda index: lengths[index], reverse=True)
        batches += [megabatch[at : at + batch_size] for at in range(0, len(megabatch), batch_size)]
    # The DataLoader cuts this order into `batch_size` slices again, so a short batch must
    # stay last: anywhere else it would shift every later slice across two length groups.
    short = batches.pop() if batches and len(batches[-1]) < batch_size else None
    shuffled = [batches[at] for at in torch.randperm(len(batches), generator=generator).tolist()]
    if shuffled:
        longest = max(range(len(shuffled)), key=lambda at: lengths[shuffled[at][0]])
        shuffled[0], shuffled[longest] = shuffled[longest], shuffled[0]
    if short is not None:
        shuffled.append(short)
    return [index for batch in shuffled for index in batch]


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' LengthGroupedSampler (same lengths, batch size and generator) with
    megabatches of 50 batches on any data set and the batches shuffled."""

    @classmethod
    def replacing(cls, sampler: LengthGroupedSampler) -> EpochLengthGroupedSampler:
        """The same sampler's data with this ordering."""
        return cls(sampler.batch_size, lengths=list(sampler.lengths), generator=sampler.generator)

    def __iter__(self) -> Iterator[int]:
        return iter(length_grouped_order(list(self.lengths), self.batch_size, self.generator))
