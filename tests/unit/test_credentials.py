"""Credential-like argument names (kubetune_api.credentials): matched, not matched, redacted."""

from __future__ import annotations

import re

import pytest

from kubetune_api.credentials import CREDENTIAL_KEY_PATTERN, REDACTED, is_credential_key, redact


@pytest.mark.parametrize(
    "name",
    [
        "hub_token",
        "hf_token",
        "token",
        "authToken",
        "api_key",
        "apikey",
        "aws_secret_access_key",
        "private_key",
        "client_secret",
        "password",
        "db_passwd",
        "credentials",
        "azure_storage_connection_string",
        "ConnectionString",
        "conn_str",
    ],
)
def test_credential_names(name: str) -> None:
    assert is_credential_key(name)


@pytest.mark.parametrize(
    "name",
    ["eos_token", "pad_token", "mask_token", "learning_rate", "num_input_tokens_seen", "keys", "key_name", "tokenizer"],
)
def test_names_that_are_no_credentials(name: str) -> None:
    assert not is_credential_key(name)


def test_redaction_reaches_every_depth_and_keeps_the_rest() -> None:
    args = {
        "learning_rate": 1e-3,
        "hub_token": "hf_abc",
        "deepspeed": {"zero_optimization": {"stage": 2}, "comms_logger": {"api_key": "k"}},
        "callbacks": [{"name": "x", "password": "p"}],
        "eos_token": "<|im_end|>",
    }
    assert redact(args) == {
        "learning_rate": 1e-3,
        "hub_token": REDACTED,
        "deepspeed": {"zero_optimization": {"stage": 2}, "comms_logger": {"api_key": REDACTED}},
        "callbacks": [{"name": "x", "password": REDACTED}],
        "eos_token": "<|im_end|>",
    }
    assert redact(True) is True and redact(None) is None


def test_the_pattern_is_plain_re2_for_a_cel_rule() -> None:
    """No lookaround or backreferences (RE2 has neither); case-insensitive by its own flag."""
    assert not re.search(r"\(\?[=!<]|\\\d", CREDENTIAL_KEY_PATTERN)
    assert CREDENTIAL_KEY_PATTERN.startswith("(?i)")
