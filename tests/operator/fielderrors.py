"""apimachinery's field.ErrorList and the name checks of apimachinery/pkg/util/validation, in Python.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apimachinery/pkg/):
    util/validation/field/errors.go    Error.Error / ErrorBody   -> FieldError.__str__
    util/validation/field/path.go      Child / Index / Key       -> child / index / key
    util/validation/validation.go      IsDNS1035Label, IsDNS1123Subdomain, IsQualifiedName,
                                       IsValidLabelValue, RegexError, MaxLenError -> is_* helpers

Values are printed as the API server prints simple ones (strings quoted, numbers and
booleans bare); a composite value is printed as compact JSON, not as Go's %#v.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_NO_VALUE = object()
STRICT = "strict decoding error"


@dataclass(frozen=True)
class FieldError:
    """apimachinery field.Error: what the API server reports for one broken rule."""

    path: str
    kind: str  # Required value, Forbidden, Invalid value, Unsupported value, Duplicate value, Too many, ...
    detail: str = ""
    value: Any = _NO_VALUE

    def __str__(self) -> str:
        if self.kind == STRICT:
            return self.detail  # a decoding error, before any validation
        body = self.kind
        if self.value is not _NO_VALUE:
            body += f": {_format_value(self.value)}"
        if self.detail:
            body += f": {self.detail}"
        return f"{self.path}: {body}"


def _format_value(value: Any) -> str:
    """ErrorBody's value printing: strings quoted, simple values as they are, the rest as JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, "Required value", detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, "Forbidden", detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "Invalid value", detail, value)


def not_supported(path: str, value: Any, supported: Iterable[str]) -> FieldError:
    quoted = ", ".join(json.dumps(s) for s in supported)
    return FieldError(path, "Unsupported value", f"supported values: {quoted}", value)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, "Duplicate value", "", value)


def too_many(path: str, actual: int, limit: int) -> FieldError:
    return FieldError(path, "Too many", f"must have at most {limit} items", actual)


def too_long(path: str, limit: int) -> FieldError:
    return FieldError(path, "Too long", f"may not be more than {limit} bytes")


def internal(path: str, detail: str) -> FieldError:
    return FieldError(path, "Internal error", detail)


def child(path: str, *names: str) -> str:
    for name in names:
        path = f"{path}.{name}" if path else name
    return path


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, name: str) -> str:
    return f"{path}[{name}]"


# --- apimachinery/pkg/util/validation ------------------------------------------------------------

DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
    "and end with an alphanumeric character"
)
DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character"
)
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character"
)


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """validation.go RegexError (its double space before `or` included)."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len_error(63))
    if not re.fullmatch(DNS1035_LABEL_FMT, value):
        errs.append(_regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(_max_len_error(253))
    if not re.fullmatch(DNS1123_SUBDOMAIN_FMT, value):
        errs.append(_regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        errs = (
            ["prefix part must be non-empty"]
            if not prefix
            else [f"prefix part {m}" for m in is_dns1123_subdomain(prefix)]
        )
    else:
        return [
            "a qualified name " + _regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len_error(63))
    if name and not re.fullmatch(QUALIFIED_NAME_FMT, name):
        errs.append("name part " + _regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len_error(63))
    if not re.fullmatch(LABEL_VALUE_FMT, value):
        errs.append(_regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def json_kind(value: Any) -> str:
    """The JSON kind of a decoded value, as encoding/json names it in errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")
