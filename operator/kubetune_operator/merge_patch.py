"""JSON merge patches (RFC 7386), the way the API server applies them to status.

A merge patch replaces lists whole and merges objects key by key; `null` removes a key.
`diff` builds the smallest patch from one status to another, nested keys that went away
included (a top-level replace of `progress` would leave a vanished `progress.eval.f1` on
the server); `apply` is what the server does with it, for the operator's write cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def diff(old: Mapping[str, Any], new: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The merge patch turning `old` into `new` ({} when equal), limited to `keys` if given."""
    patch: dict[str, Any] = {}
    for key in keys if keys is not None else (*old, *(k for k in new if k not in old)):
        before, after = old.get(key), new.get(key)
        if after is None:
            if before is not None:
                patch[key] = None
        elif isinstance(before, Mapping) and isinstance(after, Mapping):
            nested = diff(before, after)
            if nested:
                patch[key] = nested
        elif before != after:
            patch[key] = _without_nulls(after)
    return patch


def apply(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`target` with `patch` applied (RFC 7386)."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = apply(result[key], value)
        else:
            result[key] = _without_nulls(value)
    return result


def _without_nulls(value: Any) -> Any:
    # A null inside a value we set would remove, not store, that key on the server.
    if isinstance(value, Mapping):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    return value
