"""Fixtures shared by the trainer tests (and the runtime tests): tiny local models, a real S3, a real registry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Let test modules and other engineers' tests `import tiny_models` without a package.
sys.path.insert(0, str(Path(__file__).parent))

from moto_s3 import Bucket, moto_server, new_bucket
from registry_server import Registry, registry_server
from runtime_helpers import toy_rows, write_csv
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
def data(tmp_path: Path) -> dict[str, str]:
    """A data spec: 32 training and 8 validation rows of the cat/dog toy set, as local csv files."""
    return {
        "train": str(write_csv(tmp_path / "data" / "train.csv", toy_rows(32))),
        "validation": str(write_csv(tmp_path / "data" / "validation.csv", toy_rows(8, seed=1))),
    }


@pytest.fixture()
def no_quantize_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the CPU k-bit override is off, whatever the caller's environment says."""
    monkeypatch.delenv("KUBETUNE_QUANTIZE_ON_CPU", raising=False)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port) for the whole session, AWS_* pointed at it."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture()
def s3(s3_endpoint: str) -> Bucket:
    """An empty bucket of its own for each test, reached through s3fs and HTTP."""
    return new_bucket()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1 (a free port, plain HTTP, htpasswd auth) for the session."""
    with registry_server(tmp_path_factory.mktemp("registry")) as running:
        yield running
