"""Argument names that hold credentials (hub tokens, API keys, passwords, connection strings).

One definition for everyone: the trainer redacts such values wherever they occur in the
trainingArgs, lora and quantize it records (kubetune.json, kubetune-run.json), and the spec
validation can refuse them outright (a credential belongs in a Secret, passed through
`env` with `valueFrom.secretKeyRef`). The env-variable counterpart is
`kubetune_api.finetunejob.SECRET_ENV_PATTERN`.

`CREDENTIAL_KEY_PATTERN` is plain RE2 syntax (case-insensitive through its own `(?i)`), so
a CEL rule can use the same string; `NOT_CREDENTIAL_KEYS` lists the names it matches that
are no credentials: a tokenizer's special tokens (TRL's SFTConfig has `eos_token` and
`pad_token`). `is_credential_key` applies both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# *token (hub_token, hf_token, authToken), *key (api_key, access_key, private_key),
# *secret (client_secret), *password / *passwd, *credential(s), *connection_string / *conn_str.
CREDENTIAL_KEY_PATTERN = r"(?i)(token|key|secret|password|passwd|credentials?|conn(ection)?_?str(ing)?)$"
NOT_CREDENTIAL_KEYS: frozenset[str] = frozenset(
    {"bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"}
)
REDACTED = "<redacted>"

_CREDENTIAL_KEY = re.compile(CREDENTIAL_KEY_PATTERN)


def is_credential_key(name: str) -> bool:
    """True for an argument name whose value is a credential."""
    return name not in NOT_CREDENTIAL_KEYS and _CREDENTIAL_KEY.search(name) is not None


def redact(value: Any) -> Any:
    """`value` with the value of every credential key replaced by REDACTED, at any depth."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_credential_key(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
