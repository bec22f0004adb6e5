"""How `kubetune get`, `status` and `wait` show a run: text from a RunStatus, and the
progress display of `wait` (a tqdm bar on a terminal when tqdm is installed, which comes
with the trainer extra; plain lines otherwise, one per change)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from kubetune_api.run_status import RunStatus
from kubetune_api.status_model import ProgressStatus


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """3h 05m, 4m 10s or 12s."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def eta_text(eta: str | None, now: datetime) -> str:
    """ "in 4m 10s (14:03 UTC)", from status.progress.eta; "" without one."""
    moment = _time(eta)
    if moment is None:
        return ""
    return f"in {duration((moment - now).total_seconds())} ({moment.astimezone(timezone.utc):%H:%M} UTC)"


def progress_text(progress: ProgressStatus | None, now: datetime) -> str:
    """step 5/20 (25%), epoch 0.50, loss 1.5000, eval accuracy 0.9100, ETA in 4m 10s (14:03 UTC)."""
    if progress is None:
        return ""
    parts = [f"step {progress.step}/{progress.max_steps} ({progress.percent}%)"]
    if progress.epoch is not None:
        parts.append(f"epoch {progress.epoch:.2f}")
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4f}")
    parts += [f"eval {key} {value:.4f}" for key, value in sorted(progress.eval.items())]
    eta = eta_text(progress.eta, now)
    if eta and progress.percent < 100:
        parts.append(f"ETA {eta}")
    return ", ".join(parts)


def detail_lines(run: RunStatus, now: datetime) -> list[str]:
    """`kubetune status NAME`: what the run is, where it is, and what came out of it."""
    status = run.status
    rows: list[tuple[str, Any]] = [
        ("Name", f"{run.namespace}/{run.name}"),
        ("Task", run.task or "text-classification"),
        ("Base", run.base),
        ("Phase", run.state),
        ("Progress", progress_text(run.progress, now)),
        ("Job", status.job_name),
        ("Pod", status.pod_name),
        ("Attempts", status.attempts),
        ("Started", status.start_time),
        ("Completed", status.completion_time),
    ]
    if run.artifact is not None:
        rows.append(("Model", f"{run.artifact.uri} ({run.artifact.kind})"))
        if run.artifact.merged_uri:
            rows.append(("Merged model", run.artifact.merged_uri))
    if run.metrics:
        rows.append(("Metrics", ", ".join(f"{key} {value:.4g}" for key, value in sorted(run.metrics.items()))))
    shown = [(label, value) for label, value in rows if value not in (None, "")]
    width = max(len(label) for label, _ in shown) + 1
    return [f"{label + ':':<{width}} {value}" for label, value in shown]


def table_lines(runs: Sequence[RunStatus], now: datetime) -> list[str]:
    """`kubetune get`: one row per run."""
    header = ("NAME", "PHASE", "PROGRESS", "LOSS", "ETA", "REASON")
    rows = [header]
    for run in runs:
        progress = run.progress
        rows.append(
            (
                run.name,
                run.phase or "Submitted",
                f"{progress.percent}%" if progress else "",
                f"{progress.loss:.4f}" if progress and progress.loss is not None else "",
                eta_text(progress.eta, now).split(" (")[0] if progress and not run.finished else "",
                run.reason or "",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return ["   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def outcome_line(run: RunStatus) -> str:
    """The last line of `kubetune wait`: how it ended and where the model is."""
    if run.succeeded and run.artifact is not None:
        return f"{run.name}: Succeeded, model at {run.artifact.uri}"
    return f"{run.name}: {run.state}"


class ProgressDisplay:
    """`kubetune wait`'s view of a run while it goes: a bar and a line per change of phase,
    or, without tqdm or a terminal, a line per change of anything."""

    def __init__(self, out: TextIO | None = None, bar: bool | None = None) -> None:
        self.out = out or sys.stdout
        self._tqdm: Any = None
        self._bar: Any = None
        self._state = ""
        if self.out.isatty() if bar is None else bar:
            try:
                from tqdm import tqdm  # comes with the trainer extra; plain lines without it
            except ImportError:
                pass
            else:
                self._tqdm = tqdm

    def update(self, run: RunStatus) -> None:
        state, progress = run.state, run.progress
        if self._tqdm is None:
            line = f"{run.name}: {state}"
            if progress is not None and not run.finished:
                line += f", {progress_text(progress, datetime.now(timezone.utc))}"
            print(line, file=self.out, flush=True)
            return
        if state != self._state:
            self._tqdm.write(f"{run.name}: {state}", file=self.out)
            self._state = state
        if progress is not None and progress.max_steps:
            if self._bar is None:
                self._bar = self._tqdm(total=progress.max_steps, unit="step", desc=run.name, file=self.out)
            self._bar.n = progress.step
            self._bar.set_postfix({"loss": f"{progress.loss:.4f}"} if progress.loss is not None else {})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
