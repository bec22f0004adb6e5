"""The memory estimate (kubetune_api.memory_estimate) against published figures and measured tensors.

1. For each published figure in tests/unit/published_models.py: the estimate, the figure and
   the relative error (the test suite asserts each within its band).
2. For tiny models built here from a transformers config (a Llama, a BERT classifier, a
   GPT-2), full fine-tuning and LoRA, trained 3 steps on CPU with torch's AdamW: the bytes of
   the parameters, their gradients and the optimizer state, summed over the real tensors
   after the last step (tensors, not RSS), against the estimate's weights, gradients and
   optimizer parts. Activations and the CUDA overhead are GPU matters, not measured here.

    .venv/bin/python bench/memory_estimate.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BertConfig, GPT2Config, LlamaConfig

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "unit"))

from published_models import FIGURES  # noqa: E402

from kubetune_api.memory_estimate import estimate_memory  # noqa: E402
from kubetune_api.training import TrainingSpec  # noqa: E402

STEPS, BATCH, SEQ = 3, 4, 32
TINY: dict[str, tuple[Any, str]] = {
    "tiny Llama": (
        LlamaConfig(
            hidden_size=64,
            intermediate_size=172,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=1000,
            max_position_embeddings=128,
            tie_word_embeddings=False,
        ),
        "language-generation",
    ),
    "tiny BERT classifier": (
        BertConfig(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=1000,
            max_position_embeddings=128,
            num_labels=2,
        ),
        "text-classification",
    ),
    "tiny GPT-2": (GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=128), "language-generation"),
}


def spec(task: str, lora: bool) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {
            "task": task,
            "base": {"model": "tiny"},
            "data": {"train": "t.jsonl"},
            "maxLength": SEQ,
            "lora": {"r": 8, "target_modules": "all-linear", "lora_dropout": 0.05} if lora else None,
            "trainingArgs": {"per_device_train_batch_size": BATCH, "optim": "adamw_torch"},
        }
    )


def measured(config: Any, task: str, lora: bool) -> tuple[int, int, int]:
    """(parameter, gradient, optimizer state) bytes after STEPS AdamW steps on random data."""
    torch.manual_seed(0)
    classify = task == "text-classification"
    model = (AutoModelForSequenceClassification if classify else AutoModelForCausalLM).from_config(config)
    if lora:
        kind = TaskType.SEQ_CLS if classify else TaskType.CAUSAL_LM
        model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.05, task_type=kind))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    for _ in range(STEPS):
        ids = torch.randint(0, config.vocab_size, (BATCH, SEQ))
        labels = torch.randint(0, 2, (BATCH,)) if classify else ids
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients to measure them
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    state = sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for name, t in s.items()
        if torch.is_tensor(t) and name != "step"  # a scalar per tensor
    )
    return weights, grads, state


def error(estimate: float, actual: float) -> str:
    return f"{(estimate - actual) / actual:+.1%}" if actual else "n/a"


def main() -> None:
    print("Published figures (GB = 1e9 bytes)")
    print(f"{'figure':<62} {'estimate':>9} {'published':>9} {'error':>7}  band")
    for figure in FIGURES:
        found = getattr(estimate_memory(figure.config, TrainingSpec.model_validate(figure.spec)), figure.part) / 1e9
        band = f"{figure.low_gb:.1f}-{figure.high_gb:.1f}"
        print(
            f"{figure.name:<62} {found:>9.2f} {figure.published_gb:>9.2f} "
            f"{error(found, figure.published_gb):>7}  {band}"
        )
    print()
    print(f"Tiny models on CPU: bytes after {STEPS} AdamW steps, measured tensors vs estimate")
    print(f"{'model':<22} {'mode':<5} {'part':<10} {'measured':>10} {'estimate':>10} {'error':>7}")
    for name, (config, task) in TINY.items():
        config_dict = config.to_dict()
        for lora in (False, True):
            found = estimate_memory(config_dict, spec(task, lora))
            actual = measured(config, task, lora)
            for part, real, guess in zip(
                ("weights", "gradients", "optimizer"),
                actual,
                (found.weights, found.gradients, found.optimizer),
                strict=True,
            ):
                mode = "lora" if lora else "full"
                print(f"{name:<22} {mode:<5} {part:<10} {real:>10,} {guess:>10,} {error(guess, real):>7}")


if __name__ == "__main__":
    main()
