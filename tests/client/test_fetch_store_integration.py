"""`Client.fetch` and `kubetune fetch` from an object store: moto's S3 server over HTTP on
127.0.0.1 when moto is installed (reached through s3fs as from a laptop), else a file://
artifact through the same fsspec path."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.client import Client
from kubetune_api.fetch_pvc import FetchError
from tests.client.conftest import finetunejob, set_status
from tests.client.test_cli_integration import kubetune
from tests.operator.cluster import FakeCluster

HAVE_MOTO = importlib.util.find_spec("moto") is not None and importlib.util.find_spec("s3fs") is not None
# What botocore needs to talk to moto and nothing else: no profile, no config files, no IMDS.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
MODEL_FILES = {
    "config.json": b"{}",
    "model.safetensors": bytes(range(256)) * 40,
    "merged/model.safetensors": b"merged",
    "checkpoint-5/optimizer.pt": b"o" * 500,
    "kubetune.json": b'{"metrics": {}}',
}


@pytest.fixture
def artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A trained model's folder in an object store; its URI."""
    if not HAVE_MOTO:
        folder = tmp_path / "store" / "models" / "sentiment"
        for name, data in MODEL_FILES.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        yield folder.as_uri()
        return

    import fsspec
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3 = fsspec.get_filesystem_class("s3")
    s3.clear_instance_cache()  # an s3fs made before would not know the endpoint
    try:
        store = fsspec.filesystem("s3")
        bucket = f"models-{uuid.uuid4().hex[:12]}"  # moto keeps buckets for the whole process
        store.mkdir(bucket)
        for name, data in MODEL_FILES.items():
            store.pipe_file(f"{bucket}/runs/sentiment/{name}", data)
        yield f"s3://{bucket}/runs/sentiment"
    finally:
        s3.clear_instance_cache()
        server.stop()


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
    expected = {name: data for name, data in MODEL_FILES.items() if not name.startswith("checkpoint-")}
    assert files_under(target) == expected

    everything = await asyncio.to_thread(client.fetch, "stored", tmp_path / "all", checkpoints=True)
    assert files_under(everything) == MODEL_FILES
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
