"""`Client.fetch` and `kubetune fetch` of an oci:// artifact: a real registry (Debian's docker-registry
on 127.0.0.1) holding a model in kubetune's layout, read with this machine's Docker config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune_api.client import Client
from kubetune_api.fetch_pvc import FetchError
from kubetune_api.oci_layout import CONFIG_MEDIA_TYPE, blob, file_layer, image_config, image_manifest
from kubetune_api.oci_reference import check_oci_output
from kubetune_api.oci_registry import RegistrySession
from tests.client.conftest import finetunejob, set_status
from tests.client.test_cli_integration import kubetune
from tests.operator.cluster import FakeCluster
from tests.trainer.registry_server import Registry, registry_server

MODEL_FILES = {
    "adapter_config.json": b'{"r": 8, "peft_type": "LORA"}',
    "adapter_model.safetensors": bytes(range(256)) * 400,
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\ncat\ndog\n",
    "kubetune.json": b'{"metrics": {}}',
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry_server(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
def docker_login(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `docker login` leaves on a laptop."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(registry.docker_config())
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def push_model(registry: Registry, tag: str, folder: Path) -> str:
    """Push MODEL_FILES as the trainer lays them out; the digest-pinned URI."""
    target = check_oci_output(registry.uri("team/sentiment", tag))
    session = RegistrySession(target, insecure=True, credentials=(registry.user, registry.password))
    session.check()
    layers = []
    for index, (name, content) in enumerate(MODEL_FILES.items()):
        source = folder / f"file-{index}"
        source.write_bytes(content)
        layers.append(file_layer(source, name, folder / f"layer-{index}.tar"))
        session.push_blob(layers[-1])
    config = blob(image_config(layers), CONFIG_MEDIA_TYPE, folder / "config.json")
    session.push_blob(config)
    digest = session.push_manifest(image_manifest(config, layers, "adapter", {}), tag)
    return target.pinned(digest).uri()


async def succeeded_run(cluster: FakeCluster, name: str, uri: str) -> None:
    spec: dict[str, Any] = {
        "task": "language-generation",
        "base": {"model": "org/tiny-llama"},
        "data": {"train": "s3://bucket/train.jsonl"},
        "lora": True,
        "output": {
            "uri": "oci://127.0.0.1:5000/team/sentiment:v1",
            "checkpointUri": "s3://b/c",
            "insecureRegistry": True,
        },
    }
    await asyncio.to_thread(Client(interval=0.05).submit, finetunejob(name, spec))
    await set_status(cluster, name, {"phase": "Succeeded", "artifact": {"uri": uri, "kind": "adapter"}})


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def test_fetch_pulls_the_pinned_artifact(
    cluster: FakeCluster, registry: Registry, docker_login: None, tmp_path: Path
) -> None:
    uri = await asyncio.to_thread(push_model, registry, "v1", tmp_path)
    await succeeded_run(cluster, "pushed", uri)
    target = await asyncio.to_thread(Client(interval=0.05).fetch, "pushed", tmp_path / "model")
    assert files_under(target) == MODEL_FILES
    assert await cluster.pods() == []  # no pod for a registry

    code, out, err = await kubetune("fetch", "pushed", str(tmp_path / "cli"))
    assert code == 0, err
    assert out == f"pushed: model copied to {tmp_path / 'cli'}\n"
    assert files_under(tmp_path / "cli") == MODEL_FILES


async def test_fetch_without_credentials_says_how_to_log_in(
    cluster: FakeCluster, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = await asyncio.to_thread(push_model, registry, "v2", tmp_path)
    await succeeded_run(cluster, "private", uri)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nowhere"))
    with pytest.raises(FetchError, match="wants credentials and none were given; log in to the registry"):
        await asyncio.to_thread(Client(interval=0.05).fetch, "private", tmp_path / "model")
    assert not (tmp_path / "model").exists()
