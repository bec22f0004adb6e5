"""The trainer -> operator protocol: progress lines and the termination message."""

from __future__ import annotations

import json

from kubetune_api.protocol import (
    TERMINATION_MESSAGE_LIMIT,
    Artifact,
    Progress,
    Result,
    decode_result,
    encode_result,
    format_progress,
    last_progress,
    parse_progress,
)


def test_progress_line_round_trips() -> None:
    progress = Progress(step=10, max_steps=100, epoch=0.5, loss=0.25, eval={"accuracy": 0.9})
    line = format_progress(progress)
    assert "\n" not in line
    assert json.loads(line)["kubetuneProgress"]["maxSteps"] == 100
    assert parse_progress(line) == progress


def test_other_log_lines_are_not_progress() -> None:
    assert parse_progress("Some weights were not initialized") is None
    assert parse_progress('{"kubetuneProgress": "garbage"}') is None


def test_last_progress_picks_the_newest_report() -> None:
    log = "\n".join(
        [
            format_progress(Progress(step=1, max_steps=4)),
            "warning: something",
            format_progress(Progress(step=3, max_steps=4, loss=0.1)),
            "a trailing line without progress",
        ]
    )
    latest = last_progress(log)
    assert latest is not None and latest.step == 3 and latest.loss == 0.1
    assert last_progress("no progress here") is None


def test_result_round_trips() -> None:
    result = Result(
        outcome="Succeeded",
        artifact=Artifact(uri="s3://b/model", kind="adapter", merged_uri="s3://b/model/merged"),
        metrics={"accuracy": 0.93},
    )
    assert decode_result(encode_result(result)) == result


def test_oversized_result_keeps_outcome_and_artifact() -> None:
    result = Result(
        outcome="Failed",
        reason="TrainingError",
        message="x" * 10_000,
        warnings=["w" * 500] * 20,
        metrics={f"metric_{i}": float(i) for i in range(500)},
        artifact=Artifact(uri="pvc://models/run", kind="full"),
    )
    encoded = encode_result(result)
    assert len(encoded.encode()) <= TERMINATION_MESSAGE_LIMIT
    decoded = decode_result(encoded)
    assert decoded is not None
    assert decoded.outcome == "Failed" and decoded.reason == "TrainingError"
    assert decoded.artifact == result.artifact
    assert decoded.message is not None and decoded.message.endswith("...")


def test_foreign_termination_message_is_ignored() -> None:
    assert decode_result("panic: runtime error") is None
    assert decode_result("") is None


def test_an_output_in_use_is_a_config_failure() -> None:
    """Another run's output stays another run's on every retry: exit 78, no retry."""
    from kubetune_api.protocol import EXIT_INVALID_CONFIG, exit_code, failed

    assert exit_code(failed("OutputInUse", "output.uri s3://b/m belongs to FineTuneJob a/b")) == EXIT_INVALID_CONFIG
