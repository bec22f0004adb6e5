"""Default evaluation metrics per task (used when the caller passes no `metrics`).

text-classification covers three label kinds and the metric follows what the
predictions look like, since the label kind is only known after reading the data:

* one output column and float labels: regression -> mse (and mae);
* 2-D float labels of 0/1: multi-label -> subset accuracy (every label right) and
  micro-F1 over all label decisions (logit > 0, i.e. sigmoid > 0.5);
* otherwise: single-label -> accuracy of the argmax.

Which suite a task gets is declared in the task registry (`TaskInfo.metrics`). Tasks
without a suite return None: the Trainer's eval loss is the useful number there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from transformers import EvalPrediction

from kubetune_api.tasks import task_info

Metrics = Callable[[EvalPrediction], dict[str, float]]

# Timing figures the Trainer logs with every evaluation: not model quality, so not metrics.
EVAL_TIMINGS = frozenset({"runtime", "samples_per_second", "steps_per_second"})


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a real, finite number (not a bool, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def eval_results(logs: Mapping[str, Any]) -> dict[str, float]:
    """The eval_* numbers of a Trainer log or evaluate(), keys without the prefix, timings and
    non-finite values left out."""
    results = {}
    for key, value in logs.items():
        number = finite_number(value)
        name = key.removeprefix("eval_")
        if key.startswith("eval_") and number is not None and name not in EVAL_TIMINGS:
            results[name] = number
    return results


def _logits(predictions: object) -> np.ndarray:
    # Some models return a tuple (logits, hidden states, ...): the logits come first.
    while isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions)


def classification_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """accuracy / mse / subset accuracy + micro-F1, depending on the label kind."""
    logits = _logits(prediction.predictions)
    labels = np.asarray(prediction.label_ids)
    if labels.ndim == 2 and logits.ndim == 2 and labels.shape == logits.shape and logits.shape[1] > 1:
        predicted = logits > 0
        truth = labels > 0.5
        tp = float(np.sum(predicted & truth))
        fp = float(np.sum(predicted & ~truth))
        fn = float(np.sum(~predicted & truth))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        return {"accuracy": float(np.mean(np.all(predicted == truth, axis=1))), "f1": f1}
    if logits.ndim == 1 or logits.shape[-1] == 1:
        error = logits.reshape(-1) - labels.reshape(-1).astype(np.float64)
        return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error)))}
    return {"accuracy": float(np.mean(np.argmax(logits, axis=-1) == labels))}


# Metric suites computed from predictions, by the name the task registry uses.
METRIC_SUITES: dict[str, Metrics] = {"classification": classification_metrics}


def default_metrics(task: str) -> Metrics | None:
    """The compute_metrics function for `task`, or None when the eval loss is enough."""
    suite = task_info(task).metrics
    return METRIC_SUITES.get(suite) if suite else None
