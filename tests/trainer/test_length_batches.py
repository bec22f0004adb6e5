"""group_by_length's order: rows of similar length together over the whole epoch, batches shuffled."""

from __future__ import annotations

import math
import random

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

from kubetune_trainer.length_batches import length_grouped_order

BATCH = 16


def long_tail_lengths(rows: int = 256, seed: int = 0) -> list[int]:
    """Token counts of 5-200 words, log-uniform (most rows short, a few long)."""
    rng = random.Random(seed)
    return [round(math.exp(rng.uniform(math.log(5), math.log(200)))) + 2 for _ in range(rows)]


def batches_of(order: list[int]) -> list[list[int]]:
    return [order[at : at + BATCH] for at in range(0, len(order), BATCH)]


def padding_efficiency(order: list[int], lengths: list[int]) -> float:
    """Real tokens over processed tokens when each batch is padded to its longest row."""
    processed = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches_of(order))
    return sum(lengths) / processed


def test_every_row_once_with_the_longest_row_first_and_the_short_batch_last() -> None:
    lengths = long_tail_lengths(250)
    order = length_grouped_order(lengths, BATCH, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(250))
    assert max(lengths[i] for i in order[:BATCH]) >= max(lengths[i] for i in order[BATCH:-10])
    # The DataLoader slices the order into batches again: each slice must be one of the
    # megabatch's sorted runs (a short batch in the middle would shift every later slice).
    shuffled = torch.randperm(250, generator=torch.Generator().manual_seed(1)).tolist()
    by_length = sorted(shuffled, key=lengths.__getitem__, reverse=True)
    runs = {frozenset(by_length[at : at + BATCH]) for at in range(0, 250, BATCH)}
    assert {frozenset(batch) for batch in batches_of(order)} == runs
    assert padding_efficiency(order, lengths) > 0.85


def test_small_data_sets_waste_far_less_padding_than_transformers_grouping() -> None:
    lengths = long_tail_lengths()
    ours, theirs = [], []
    for seed in range(10):
        ours.append(
            padding_efficiency(length_grouped_order(lengths, BATCH, torch.Generator().manual_seed(seed)), lengths)
        )
        grouped = get_length_grouped_indices(lengths, BATCH, generator=torch.Generator().manual_seed(seed))
        theirs.append(padding_efficiency(grouped, lengths))
    assert min(ours) > 0.85
    assert min(ours) > max(theirs) + 0.1


def test_batches_come_in_random_order_not_longest_to_shortest() -> None:
    lengths = long_tail_lengths()
    orders = [length_grouped_order(lengths, BATCH, torch.Generator().manual_seed(seed)) for seed in range(3)]
    for order in orders:
        longest = [max(lengths[i] for i in batch) for batch in batches_of(order)]
        assert longest[1:] != sorted(longest[1:], reverse=True)  # no long-to-short curriculum
    assert orders[0] != orders[1]  # each epoch (generator state) has its own order


def test_large_data_sets_sort_within_fifty_batches_at_a_time() -> None:
    lengths = long_tail_lengths(BATCH * 120)
    order = length_grouped_order(lengths, BATCH, torch.Generator().manual_seed(2))
    # The same generator's first draw is the shuffle the megabatches are cut from.
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(2)).tolist()
    megabatch_of = {index: position // (BATCH * 50) for position, index in enumerate(shuffled)}
    assert all(len({megabatch_of[i] for i in batch}) == 1 for batch in batches_of(order))
    assert len(set(megabatch_of.values())) == 3
