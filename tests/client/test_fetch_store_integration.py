"""`Client.fetch` and `kubetune fetch` from an object store: moto's S3 server over HTTP on
127.0.0.1, reached through s3fs as from a laptop (the trainer's tests use the same server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.client import Client
from kubetune_api.fetch_pvc import FetchError
from tests.client.conftest import finetunejob, set_status
from tests.client.test_cli_integration import kubetune
from tests.operator.cluster import FakeCluster
from tests.trainer.moto_s3 import moto_server, new_bucket

MODEL_FILES = {
    "config.json": b"{}",
    "model.safetensors": bytes(range(256)) * 40,
    "merged/model.safetensors": b"merged",
    "checkpoint-5/optimizer.pt": b"o" * 500,
    "kubetune.json": b'{"metrics": {}}',
    "kubetune-run.json": b'{"kubetuneRun": 1}',  # which run owns the output: bookkeeping, not the model
}


@pytest.fixture
def artifact() -> Iterator[str]:
    """A trained model's folder in an object store (moto's S3 over HTTP); its URI."""
    with moto_server():
        bucket = new_bucket()
        for name, data in MODEL_FILES.items():
            bucket.fs.pipe_file(bucket.path("runs/sentiment", name), data)
        yield bucket.uri("runs/sentiment")


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def succeeded_run(cluster: FakeCluster, name: str, uri: str) -> None:
    client = Client(interval=0.05)
    await asyncio.to_thread(client.submit, finetunejob(name))
    status: dict[str, Any] = {"phase": "Succeeded", "artifact": {"uri": uri, "kind": "full"}}
    await set_status(cluster, name, status)


async def test_fetch_copies_the_model_without_checkpoints(cluster: FakeCluster, artifact: str, tmp_path: Path) -> None:
    await succeeded_run(cluster, "stored", artifact)
    client = Client(interval=0.05)
    target = await asyncio.to_thread(client.fetch, "stored", tmp_path / "model")
    expected = {
        name: data
        for name, data in MODEL_FILES.items()
        if not name.startswith("checkpoint-") and name != "kubetune-run.json"
    }
    assert files_under(target) == expected

    everything = await asyncio.to_thread(client.fetch, "stored", tmp_path / "all", checkpoints=True)
    assert files_under(everything) == {**expected, "checkpoint-5/optimizer.pt": b"o" * 500}
    assert await cluster.pods() == []  # no pod for an object store


async def test_kubetune_fetch(cluster: FakeCluster, artifact: str, tmp_path: Path) -> None:
    await succeeded_run(cluster, "stored", artifact)
    code, out, err = await kubetune("fetch", "stored", str(tmp_path / "out"))
    assert code == 0, err
    assert out == f"stored: model copied to {tmp_path / 'out'}\n"
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == MODEL_FILES["model.safetensors"]


async def test_a_missing_backend_is_named_with_its_package(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await succeeded_run(cluster, "on-gcs", "gs://bucket/models/x")
    import fsspec.core

    def no_backend(uri: str, **_: Any) -> Any:
        raise ImportError("Install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_backend)
    client = Client(interval=0.05)
    with pytest.raises(FetchError, match=r"gs:// artifacts needs the Python package gcsfs: pip install gcsfs"):
        await asyncio.to_thread(client.fetch, "on-gcs", tmp_path / "x")


async def test_an_empty_artifact_is_an_error(cluster: FakeCluster, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    await succeeded_run(cluster, "empty", (tmp_path / "empty").as_uri())
    with pytest.raises(FetchError, match="holds no files"):
        await asyncio.to_thread(Client(interval=0.05).fetch, "empty", tmp_path / "x")
