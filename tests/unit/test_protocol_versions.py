"""Operator and trainer of different releases talk to each other (spec.image picks any trainer):
messages of the previous release and of a "next" one with fields this one does not know."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune_api.protocol import PROTOCOL_VERSION, Progress, Result, decode_result, exit_code, last_progress
from kubetune_operator.status import Observed, desired_status

FIXTURES = Path(__file__).parent / "protocol_fixtures"


def read(name: str) -> str:
    return (FIXTURES / name).read_text().strip()


def test_the_previous_release_is_read_as_version_1() -> None:
    result = decode_result(read("v0.1.0-result-succeeded.json"))
    assert result is not None and result.protocol_version == 1 and result.artifact is not None
    assert (result.artifact.uri, result.artifact.kind, result.artifact.merged_uri) == (
        "/mnt/pvc/models/out",
        "adapter",
        "/mnt/pvc/models/out/merged",
    )
    failed = decode_result(read("v0.1.0-result-failed.json"))
    assert failed is not None and failed.reason == "InvalidData" and exit_code(failed) == 78
    progress = last_progress(read("v0.1.0-progress.log"))
    assert progress is not None and (progress.step, progress.eval) == (30, {"accuracy": 0.5})


def test_a_newer_trainers_success_keeps_its_artifact() -> None:
    result = decode_result(read("next-result-succeeded.json"))
    assert result is not None and result.protocol_version == 2
    assert result.artifact is not None and result.artifact.uri.startswith("oci://")
    assert result.metrics == {"accuracy": 0.93, "perplexity": 3.2}


def test_a_newer_reason_is_still_a_failure_the_status_shows() -> None:
    result = decode_result(read("next-result-failed.json"))
    assert result is not None and result.reason == "PreemptedDuringSave" and exit_code(result) == 1
    pod = {
        "metadata": {"name": "p", "creationTimestamp": "2030-01-01T00:00:00Z"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {"terminated": {"exitCode": 1, "message": read("next-result-failed.json")}},
                }
            ],
        },
    }
    job = {"metadata": {"name": "j", "uid": "u"}, "spec": {}, "status": {"failed": 1}}
    status = desired_status(Observed(1, False, job=job, pods=[pod]), None, "2030-01-01T00:00:00Z")
    assert status["reason"] == "PreemptedDuringSave" and "saved checkpoint-40" in status["message"]


def test_non_finite_numbers_are_dropped_not_fatal() -> None:
    """json.loads reads NaN/Infinity; the status patch they would reach is JSON."""
    progress = last_progress(read("next-progress.log"))
    assert progress is not None and progress.step == 40
    assert progress.loss is None and progress.eval == {"perplexity": 3.4}
    json.dumps(progress.model_dump(mode="json"), allow_nan=False)  # and nothing else is left


def test_this_release_writes_its_version() -> None:
    assert Progress(step=1, max_steps=2).model_dump(by_alias=True)["protocolVersion"] == PROTOCOL_VERSION
    assert Result(outcome="Succeeded").model_dump(by_alias=True)["protocolVersion"] == PROTOCOL_VERSION


@pytest.mark.parametrize("name", ["v0.1.0-result-succeeded.json", "next-result-succeeded.json"])
def test_unknown_fields_are_ignored_by_readers_only(name: str) -> None:
    """Tolerant readers, strict spec: the user-facing spec still refuses unknown fields."""
    from pydantic import ValidationError

    from kubetune_api.training import TrainingSpec

    assert decode_result(read(name)) is not None
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TrainingSpec.model_validate({"base": {"model": "m"}, "data": {"train": "t.csv"}, "futureField": 1})
