"""What the trainer container tells the operator, and how.

The trainer pod has no Kubernetes API credentials, so it reports through two channels
the kubelet already provides:

* progress: one JSON object per logging step on stdout, under the key `PROGRESS_KEY`;
  the operator tails the pod log and keeps the newest line;
* result: one JSON object in the termination-message file (`/dev/termination-log`),
  which the kubelet copies into the container's terminated state. Kubernetes keeps at
  most 4096 bytes of it, so `encode_result` trims to fit.

Exit codes let the Job's podFailurePolicy tell a bad config (never worth a retry) from
anything else (retried up to backoffLimit).

Versioned and tolerant: every message carries `protocolVersion`, and readers ignore
fields they do not know. A FineTuneJob may name any trainer image (`spec.image`), so an
operator and a trainer of different releases talk to each other; a newer trainer's
extra field must not cost the status its artifact. (User-facing spec validation stays
strict: that is `kubetune_api.training`, not this module.)
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from kubetune_api.outcomes import (
    CONFIG_FAILURES,
    EXIT_FAILED,
    EXIT_INVALID_CONFIG,
    EXIT_SUCCEEDED,
    FailureReason,
)

PROGRESS_KEY = "kubetuneProgress"
# 1: the first versioned release (messages without the field are read as version 1 too).
PROTOCOL_VERSION = 1

# Environment the operator sets on the trainer container.
ENV_JOB = "KUBETUNE_JOB"  # the TrainingSpec as camelCase JSON
ENV_JOB_NAME = "KUBETUNE_JOB_NAME"  # namespace/name of the FineTuneJob, for metadata
ENV_JOB_UID = "KUBETUNE_JOB_UID"  # the FineTuneJob's uid: which run an output belongs to
ENV_TERMINATION_LOG = "KUBETUNE_TERMINATION_LOG"  # overrides the result path (tests, local runs)
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# Where object-store outputs are staged before upload (created if missing; default a temp dir).
ENV_STAGING_DIR = "KUBETUNE_STAGING_DIR"
# spec.terminationGracePeriodSeconds: how long the pod has between SIGTERM and SIGKILL (the
# launcher lets torchrun's workers save for nearly as long).
ENV_GRACE_PERIOD = "KUBETUNE_TERMINATION_GRACE_SECONDS"
# A registry output's credentials: the .dockerconfigjson of spec.registrySecret (JSON text).
ENV_REGISTRY_AUTH = "KUBETUNE_REGISTRY_AUTH"
TERMINATION_MESSAGE_LIMIT = 4096

ArtifactKind = Literal["full", "adapter"]


class Tolerant(BaseModel):
    """camelCase on the wire; unknown fields ignored, so older readers keep working."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _drop_non_finite(cls, data: Any) -> Any:
        # json.loads reads NaN and Infinity; the status patch they would end up in could
        # not be sent as JSON. A diverged loss is a missing number, not a broken message.
        return _finite_only(data)


def _finite_only(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: _finite_only(value)
            for key, value in data.items()
            if not (isinstance(value, float) and not math.isfinite(value))
        }
    return data


class WireModel(Tolerant):
    """A whole message: it says which protocol version wrote it."""

    protocol_version: int = Field(default=PROTOCOL_VERSION, description="The protocol version the writer speaks.")


class Progress(WireModel):
    """One training progress report (a Trainer logging step)."""

    step: int = Field(ge=0, description="Optimizer steps done.")
    max_steps: int = Field(ge=0, description="Optimizer steps the run will take in all.")
    epoch: float | None = Field(default=None, description="Fractional epoch reached.")
    loss: float | None = Field(default=None, description="Training loss at the last logging step.")
    learning_rate: float | None = Field(default=None, description="Current learning rate.")
    eval: dict[str, float] = Field(
        default_factory=dict, description="Latest evaluation metrics, keys without the eval_ prefix."
    )
    elapsed_seconds: float | None = Field(default=None, description="Seconds since training began.")


class Artifact(Tolerant):
    """Where the trained model was saved."""

    uri: str = Field(description="Location of the saved model (or adapter).")
    # A plain string for readers: a newer trainer may save another kind of artifact.
    kind: str = Field(description="full: a whole model; adapter: a LoRA adapter only.")
    merged_uri: str | None = Field(
        default=None, description="Location of the base model with the adapter merged in, if saved."
    )


class Result(WireModel):
    """The final word of a trainer run, written to the termination message."""

    outcome: Literal["Succeeded", "Failed"]
    artifact: Artifact | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    # A reader accepts any CamelCase word: a newer trainer may know more reasons.
    reason: str | None = Field(default=None, description="CamelCase: one of FailureReason, or a newer one.")
    message: str | None = Field(default=None, description="One line saying what went wrong.")


def exit_code(result: Result) -> int:
    """The trainer's exit code for a Result (the Job's podFailurePolicy keys on it)."""
    if result.outcome == "Succeeded":
        return EXIT_SUCCEEDED
    return EXIT_INVALID_CONFIG if result.reason in CONFIG_FAILURES else EXIT_FAILED


def failed(reason: FailureReason, message: str) -> Result:
    """A failed Result with a one-line message."""
    line = " ".join(message.split()) or reason
    return Result(outcome="Failed", reason=reason, message=line)


def format_progress(progress: Progress) -> str:
    """The stdout line for one progress report."""
    body = progress.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps({PROGRESS_KEY: body}, separators=(",", ":"))


def parse_progress(line: str) -> Progress | None:
    """The progress report on a log line, or None for any other line."""
    if PROGRESS_KEY not in line:
        return None
    try:
        payload = json.loads(line[line.index("{") :])
        return Progress.model_validate(payload[PROGRESS_KEY])
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def last_progress(log_text: str) -> Progress | None:
    """The newest progress report in a block of log text."""
    for line in reversed(log_text.splitlines()):
        progress = parse_progress(line)
        if progress is not None:
            return progress
    return None


def encode_result(result: Result, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """JSON for the termination message, trimmed to `limit` bytes.

    The artifact and the outcome are never dropped; warnings go first, then metrics,
    then the message is shortened.
    """
    data: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)

    def size() -> int:
        return len(json.dumps(data, separators=(",", ":")).encode())

    while size() > limit and data.get("warnings"):
        data["warnings"].pop()
    while size() > limit and data.get("metrics"):
        data["metrics"].pop(next(reversed(data["metrics"])))
    if size() > limit and data.get("message"):
        excess = size() - limit
        data["message"] = data["message"][: max(0, len(data["message"]) - excess - 3)] + "..."
    return json.dumps(data, separators=(",", ":"))


def decode_result(text: str | None) -> Result | None:
    """The Result in a termination message, or None when there is none or it is not ours."""
    if not text:
        return None
    try:
        return Result.model_validate_json(text)
    except ValidationError:
        return None
