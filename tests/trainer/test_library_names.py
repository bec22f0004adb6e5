"""The torch-free name lists of kubetune_api, held to the pinned libraries' real fields."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect

import pytest
from peft import LoraConfig
from transformers import BitsAndBytesConfig, TrainingArguments

from kubetune_api.credentials import is_credential_key
from kubetune_api.training_hash import BOOKKEEPING_TRAINING_ARGS


def test_every_bookkeeping_argument_is_a_training_argument() -> None:
    """A misspelt name here would silently count as training-relevant."""
    fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    assert sorted(BOOKKEEPING_TRAINING_ARGS - fields) == []


def test_the_only_credential_among_the_libraries_arguments_is_the_hub_token() -> None:
    """No false alarm on a real argument (the spec validation refuses what matches)."""
    names = {field.name for field in dataclasses.fields(TrainingArguments)}
    names |= {field.name for field in dataclasses.fields(LoraConfig)}
    names |= set(inspect.signature(BitsAndBytesConfig.__init__).parameters)
    assert sorted(name for name in names if is_credential_key(name)) == ["hub_token"]


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed")
def test_sft_special_tokens_are_no_credentials() -> None:
    from trl import SFTConfig

    names = {field.name for field in dataclasses.fields(SFTConfig)}
    assert {"eos_token", "pad_token"} <= names
    assert sorted(name for name in names if is_credential_key(name)) == ["hub_token"]
