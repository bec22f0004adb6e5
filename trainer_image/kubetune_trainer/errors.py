"""Errors a user can fix by changing the job, as opposed to failures worth a retry.

The entrypoint turns `ConfigError` into exit code `protocol.EXIT_INVALID_CONFIG`
(the Job fails at once, no retry) and reason InvalidConfig / InvalidData; anything
else is a retryable failure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """The job's configuration is wrong. The message names the field and the fix."""

    reason = "InvalidConfig"


class DataError(ConfigError):
    """The data cannot be used as given (missing file, empty, missing column, ...)."""

    reason = "InvalidData"


def closest(name: str, valid: Iterable[str], limit: int = 3) -> str:
    """' (did you mean: a, b?)' for a misspelt name, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(valid), n=limit, cutoff=0.6)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
