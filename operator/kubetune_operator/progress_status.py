"""Training progress from the trainer's log lines into `status.progress`.

The trainer prints one `{"kubetuneProgress": {...}}` line per logging step; the operator
reads only the tail of the pod log (LOG_TAIL_LINES lines) and keeps the newest report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from kubetune_api.protocol import Progress, last_progress
from kubetune_api.trainer_pod import CONTAINER_NAME
from kubetune_operator.kube import KubeApi

logger = logging.getLogger("kubetune.progress")

# Enough lines to find the newest report past interleaved library output (warnings,
# tqdm lines), few enough that one read per job per interval stays cheap.
LOG_TAIL_LINES = 200
LOG_LIMIT_BYTES = 256 * 1024
# The final outcome is written with the last progress report, but never waits longer than
# this for the pod's log (a node that is gone, a kubelet that does not answer).
LOG_READ_TIMEOUT = 5.0


def rfc3339(moment: datetime) -> str:
    return _rfc3339_second(int(moment.timestamp()))


@lru_cache(maxsize=8)
def _rfc3339_second(seconds: int) -> str:
    # Every reconcile asks for "now" (a transition's time); formatting it anew each time was
    # a measurable part of the operator's CPU per event, and the text changes once a second.
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time from the API server; None when absent or unreadable."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def progress_status(progress: Progress, now: datetime) -> dict[str, Any]:
    """The status.progress object for one report read at `now`."""
    percent = 0
    if progress.max_steps > 0:
        percent = max(0, min(100, int(100 * progress.step / progress.max_steps)))
    status: dict[str, Any] = {"step": progress.step, "maxSteps": progress.max_steps, "percent": percent}
    if progress.epoch is not None:
        status["epoch"] = round(progress.epoch, 4)
    if progress.loss is not None:
        status["loss"] = round(progress.loss, 6)
    if progress.learning_rate is not None:
        status["learningRate"] = progress.learning_rate
    if progress.eval:
        status["eval"] = {key: round(value, 6) for key, value in progress.eval.items()}
    eta = estimated_completion(progress, now)
    if eta is not None:
        status["eta"] = rfc3339(eta)
    status["updateTime"] = rfc3339(now)
    return status


def estimated_completion(progress: Progress, now: datetime) -> datetime | None:
    """Now plus the remaining steps at the pace so far; None until there is a pace."""
    if not progress.elapsed_seconds or progress.step <= 0 or progress.max_steps <= 0:
        return None
    remaining = max(0, progress.max_steps - progress.step)
    return now + timedelta(seconds=progress.elapsed_seconds / progress.step * remaining)


def progress_from_log(log_text: str, now: datetime) -> dict[str, Any] | None:
    """status.progress for the newest report in a log tail, or None when there is none."""
    progress = last_progress(log_text)
    return None if progress is None else progress_status(progress, now)


def same_progress(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether a new reading adds nothing: the clock-derived fields alone do not count."""
    if old is None or new is None:
        return old is new
    volatile = {"eta", "updateTime"}
    return {k: v for k, v in old.items() if k not in volatile} == {k: v for k, v in new.items() if k not in volatile}


async def read_progress(api: KubeApi, namespace: str, pod: str, clock: Callable[[], datetime]) -> dict[str, Any] | None:
    """status.progress from the pod's log tail (None when it holds no report)."""
    text = await api.read_pod_log(namespace, pod, CONTAINER_NAME, LOG_TAIL_LINES, LOG_LIMIT_BYTES)
    return progress_from_log(text, clock())


async def read_final_progress(
    api: KubeApi, namespace: str, pod: str, clock: Callable[[], datetime]
) -> dict[str, Any] | None:
    """read_progress, best-effort and bounded: the outcome it goes with is written without it."""
    try:
        return await asyncio.wait_for(read_progress(api, namespace, pod, clock), LOG_READ_TIMEOUT)
    except Exception as error:
        logger.warning("reading the final progress of pod %s/%s: %r", namespace, pod, error)
        return None
