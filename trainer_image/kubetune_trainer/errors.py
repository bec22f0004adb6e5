"""Errors a user can fix by changing the job, as opposed to failures worth a retry.

The entrypoint turns `ConfigError` into exit code `protocol.EXIT_INVALID_CONFIG`
(the Job fails at once, no retry) and reason InvalidConfig / InvalidData /
OutputInUse; anything else is a retryable failure.
"""

from __future__ import annotations

from typing import ClassVar

from kubetune_api.outcomes import FailureReason


class ConfigError(ValueError):
    """The job's configuration is wrong. The message names the field and the fix."""

    reason: ClassVar[FailureReason] = "InvalidConfig"


class DataError(ConfigError):
    """The data cannot be used as given (missing file, empty, missing column, ...)."""

    reason: ClassVar[FailureReason] = "InvalidData"


class OutputInUseError(ConfigError):
    """The output holds another run's files; the message names that run and the fix."""

    reason: ClassVar[FailureReason] = "OutputInUse"


def config_error_class(reason: str) -> type[ConfigError]:
    """The ConfigError subclass for a reason (another rank's report), ConfigError if unknown."""
    return next((cls for cls in (DataError, OutputInUseError) if cls.reason == reason), ConfigError)


def unresolved_pvc(uri: str) -> str:
    """Why a pvc:// URI reached the trainer as such: only the operator mounts claims."""
    return (
        f"{uri} was not resolved: pvc:// URIs are mounted into the trainer by the kubetune operator; "
        "run the job through the operator, or give a local path for a local run"
    )
