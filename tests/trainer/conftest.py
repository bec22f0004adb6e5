"""Fixtures shared by the trainer tests (and the runtime tests): tiny local models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Let test modules and other engineers' tests `import tiny_models` without a package.
sys.path.insert(0, str(Path(__file__).parent))

from tiny_chat import build_chat_llama
from tiny_models import TinyModels, build_all


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny BERT, GPT-2, T5, Llama and ELECTRA checkpoints written once per session."""
    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def chat_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer has a chat template (tests/trainer/tiny_chat.py)."""
    return build_chat_llama(tmp_path_factory.mktemp("chat-llama"))


@pytest.fixture()
def no_quantize_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the CPU k-bit override is off, whatever the caller's environment says."""
    monkeypatch.delenv("KUBETUNE_QUANTIZE_ON_CPU", raising=False)
