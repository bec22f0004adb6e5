"""The memory estimate's weights, gradients and optimizer state equal the real tensors of
tiny models after AdamW steps on CPU (bench/memory_estimate.py prints the same table)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "memory_estimate.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    loaded = importlib.util.spec_from_file_location("memory_estimate_bench", BENCH)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["tiny Llama", "tiny BERT classifier", "tiny GPT-2"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_estimate_equals_the_tensors_after_training(bench, name: str, lora: bool) -> None:  # type: ignore[no-untyped-def]
    from kubetune_api.memory_estimate import estimate_memory

    config, task = bench.TINY[name]
    found = estimate_memory(config.to_dict(), bench.spec(task, lora))
    assert bench.measured(config, task, lora) == (found.weights, found.gradients, found.optimizer)
