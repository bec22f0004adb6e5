"""How runs are shown (status, get, wait) and read (a newer operator's fields are no trouble)."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any

import pytest

from kubetune_api.outcomes import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED, outcome_exit_code
from kubetune_api.run_display import (
    ProgressDisplay,
    detail_lines,
    duration,
    outcome_line,
    progress_text,
    table_lines,
)
from kubetune_api.run_status import RunStatus

NOW = datetime(2030, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def run(name: str = "sentiment", **status: Any) -> RunStatus:
    spec = {"task": "text-classification", "base": {"model": "org/base"}}
    meta = {"name": name, "namespace": "ml", "uid": "u-1"}
    return RunStatus.from_object({"metadata": meta, "spec": spec, "status": status})


PROGRESS = {
    "step": 50,
    "maxSteps": 200,
    "percent": 25,
    "epoch": 1.25,
    "loss": 0.4321,
    "eval": {"f1": 0.8, "accuracy": 0.9},
    "eta": "2030-05-01T12:12:30Z",
}


def test_progress_reads_as_one_line() -> None:
    text = progress_text(run(progress=PROGRESS).progress, NOW)
    assert text == (
        "step 50/200 (25%), epoch 1.25, loss 0.4321, eval accuracy 0.9000, eval f1 0.8000, ETA in 12m 30s (12:12 UTC)"
    )
    assert progress_text(None, NOW) == ""


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (250, "4m 10s"), (11_160, "3h 06m"), (-3, "0s")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_status_of_a_finished_run_shows_the_model_and_metrics() -> None:
    done = run(
        phase="Succeeded",
        progress={**PROGRESS, "step": 200, "percent": 100},
        artifact={"uri": "s3://b/m", "kind": "adapter", "mergedUri": "s3://b/m/merged"},
        metrics={"accuracy": 0.91234, "train_loss": 0.2},
        attempts=2,
    )
    lines = detail_lines(done, NOW)
    assert lines[:4] == ["Name:         ml/sentiment", "Task:         text-classification", "Base:         org/base",
                         "Phase:        Succeeded"]  # fmt: skip
    assert "Progress:     step 200/200 (100%), epoch 1.25, loss 0.4321, eval accuracy 0.9000, eval f1 0.8000" in lines
    assert "Model:        s3://b/m (adapter)" in lines and "Merged model: s3://b/m/merged" in lines
    assert "Metrics:      accuracy 0.9123, train_loss 0.2" in lines and "Attempts:     2" in lines


def test_the_table_has_a_row_per_run() -> None:
    rows = table_lines(
        [run("a", phase="Running", progress=PROGRESS), run("b", phase="Failed", reason="OOMKilled")], NOW
    )
    assert [row.split() for row in rows] == [
        ["NAME", "PHASE", "PROGRESS", "LOSS", "ETA", "REASON"],
        ["a", "Running", "25%", "0.4321", "in", "12m", "30s"],
        ["b", "Failed", "OOMKilled"],
    ]
    assert table_lines([run("new")], NOW)[1].split() == ["new", "Submitted"]


def test_outcome_lines_and_exit_codes() -> None:
    assert outcome_line(run(phase="Succeeded", artifact={"uri": "pvc://m/x", "kind": "full"})) == (
        "sentiment: Succeeded, model at pvc://m/x"
    )
    assert outcome_line(run(phase="Failed", reason="InvalidData", message="no rows")) == (
        "sentiment: Failed (InvalidData: no rows)"
    )
    assert outcome_exit_code("Succeeded", None) == EXIT_SUCCEEDED
    for reason in ("InvalidSpec", "InvalidConfig", "InvalidData", "JobCreateFailed"):
        assert outcome_exit_code("Failed", reason) == EXIT_INVALID_CONFIG
    for reason in ("OOMKilled", "BackoffLimitExceeded", "DeadlineExceeded", "TooManyDisruptions", None):
        assert outcome_exit_code("Failed", reason) == EXIT_FAILED
    assert outcome_exit_code("Running", None) is None and outcome_exit_code("Suspended", None) is None


def test_fields_a_newer_operator_adds_are_read_past() -> None:
    newer = run(
        phase="Running",
        shiny={"new": True},
        progress={**PROGRESS, "tokensPerSecond": 1234.5},
        conditions=[{"type": "Ready", "status": "False", "reason": "Running", "lastTransitionTime": "x", "extra": 1}],
        artifact={"uri": "s3://b/m", "kind": "full", "digest": "sha256:abc"},
    )
    assert newer.phase == "Running" and newer.progress is not None and newer.progress.step == 50
    assert newer.status.conditions[0].reason == "Running" and newer.artifact is not None


def test_plain_lines_without_a_terminal() -> None:
    out = io.StringIO()
    display = ProgressDisplay(out, bar=False)
    display.update(run())
    display.update(run(phase="Running", progress=PROGRESS))
    display.update(run(phase="Succeeded"))
    display.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "sentiment: Submitted"
    assert lines[1].startswith("sentiment: Running, step 50/200 (25%), epoch 1.25, loss 0.4321")
    assert lines[2] == "sentiment: Succeeded"


def test_a_bar_with_tqdm() -> None:
    pytest.importorskip("tqdm")
    out = io.StringIO()
    display = ProgressDisplay(out, bar=True)
    display.update(run(phase="Running", progress=PROGRESS))
    display.update(run(phase="Running", progress={**PROGRESS, "step": 150, "percent": 75}))
    display.close()
    text = out.getvalue()
    assert "sentiment: Running" in text and "150/200" in text and "loss=0.4321" in text


def test_without_tqdm_a_bar_falls_back_to_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = io.StringIO()
    display = ProgressDisplay(out, bar=True)
    display.update(run(phase="Running", progress=PROGRESS))
    assert out.getvalue().startswith("sentiment: Running, step 50/200 (25%)")
