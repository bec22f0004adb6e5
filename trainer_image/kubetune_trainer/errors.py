"""Errors a user can fix by changing the job, as opposed to failures worth a retry.

The entrypoint turns `ConfigError` into exit code `protocol.EXIT_INVALID_CONFIG`
(the Job fails at once, no retry) and reason InvalidConfig / InvalidData; anything
else is a retryable failure.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """The job's configuration is wrong. The message names the field and the fix."""

    reason = "InvalidConfig"


class DataError(ConfigError):
    """The data cannot be used as given (missing file, empty, missing column, ...)."""

    reason = "InvalidData"
