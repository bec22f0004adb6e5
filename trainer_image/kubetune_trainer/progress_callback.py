"""A TrainerCallback that turns Trainer logs into `protocol.Progress` reports.

One report when training begins (so maxSteps is known early) and one per Trainer log
call: every logging step, every evaluation, and the final summary. Eval metrics are
kept between reports, so each report carries the latest ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetune_api.protocol import Progress
from kubetune_trainer.eval_metrics import eval_results, finite_number


class ProgressCallback(TrainerCallback):
    """Calls `on_progress` with a Progress for each Trainer log (main process only)."""

    def __init__(self, on_progress: Callable[[Progress], None]) -> None:
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.eval: dict[str, float] = {}
        self.loss: float | None = None
        self.learning_rate: float | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.started = time.monotonic()
        self._report(state)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        self.eval.update(eval_results(logs))
        # Only the per-step "loss": the end-of-training summary's train_loss is the mean over
        # the whole run, which would make the last report jump back up.
        loss = finite_number(logs.get("loss"))
        if loss is not None:
            self.loss = loss
        learning_rate = finite_number(logs.get("learning_rate"))
        if learning_rate is not None:
            self.learning_rate = learning_rate
        self._report(state)

    def _report(self, state: TrainerState) -> None:
        if not state.is_world_process_zero:
            return
        progress = Progress(
            step=state.global_step,
            max_steps=max(state.max_steps, state.global_step),
            epoch=finite_number(state.epoch),
            loss=self.loss,
            learning_rate=self.learning_rate,
            eval=dict(self.eval),
            elapsed_seconds=round(time.monotonic() - self.started, 3),
        )
        self.on_progress(progress)
