"""ProgressCallback: Trainer logs -> Progress reports -> the stdout line the operator parses."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from kubetune_api.protocol import PROGRESS_KEY, Progress, format_progress, parse_progress
from kubetune_trainer.eval_metrics import eval_results
from kubetune_trainer.progress_callback import ProgressCallback


def state(step: int, max_steps: int = 10, epoch: float | None = None, main: bool = True) -> Any:
    return SimpleNamespace(global_step=step, max_steps=max_steps, epoch=epoch, is_world_process_zero=main)


def test_reports_follow_the_trainer_logs() -> None:
    seen: list[Progress] = []
    callback = ProgressCallback(seen.append)
    args: Any = None
    callback.on_train_begin(args, state(0), None)  # type: ignore[arg-type]
    callback.on_log(args, state(5, epoch=0.5), None, logs={"loss": 0.7, "learning_rate": 1e-4, "grad_norm": 2.0})  # type: ignore[arg-type]
    eval_logs = {"eval_loss": 0.4, "eval_accuracy": 0.9, "eval_runtime": 1.2, "eval_samples_per_second": 80.0}
    callback.on_log(args, state(5, epoch=0.5), None, logs=eval_logs)  # type: ignore[arg-type]
    callback.on_log(args, state(10, epoch=1.0), None, logs={"loss": 0.3, "learning_rate": 0.0})  # type: ignore[arg-type]
    callback.on_log(args, state(10, epoch=1.0), None, logs={"train_loss": 0.5, "train_runtime": 3.0})  # type: ignore[arg-type]

    assert [(p.step, p.max_steps, p.loss) for p in seen] == [
        (0, 10, None),
        (5, 10, 0.7),
        (5, 10, 0.7),
        (10, 10, 0.3),
        (10, 10, 0.3),  # the summary's mean train_loss does not replace the last step's loss
    ]
    assert seen[1].eval == {} and seen[2].eval == {"loss": 0.4, "accuracy": 0.9}
    assert seen[-1].eval == {"loss": 0.4, "accuracy": 0.9}  # kept until the next evaluation
    assert seen[3].learning_rate == 0.0 and seen[1].epoch == 0.5
    assert all(p.elapsed_seconds is not None and p.elapsed_seconds >= 0 for p in seen)


def test_only_the_main_process_reports() -> None:
    seen: list[Progress] = []
    ProgressCallback(seen.append).on_log(None, state(1, main=False), None, logs={"loss": 1.0})  # type: ignore[arg-type]
    assert seen == []


def test_eval_metrics_ignores_timings_and_non_numbers() -> None:
    logs = {"eval_f1": 0.5, "eval_steps_per_second": 3.0, "eval_name": "x", "eval_flag": True, "eval_bad": float("nan")}
    assert eval_results(logs) == {"f1": 0.5}


def test_progress_line_format() -> None:
    progress = Progress(step=3, max_steps=9, epoch=0.33, loss=0.5, learning_rate=2e-5, eval={"accuracy": 0.8})
    line = format_progress(progress)
    assert "\n" not in line
    assert json.loads(line) == {
        PROGRESS_KEY: {
            "protocolVersion": 1,
            "step": 3,
            "maxSteps": 9,
            "epoch": 0.33,
            "loss": 0.5,
            "learningRate": 2e-5,
            "eval": {"accuracy": 0.8},
        }
    }
    assert parse_progress("2025-01-01T00:00:00Z " + line) == progress  # survives a log timestamp prefix
