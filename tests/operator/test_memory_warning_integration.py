"""The preflight memory estimate in the running operator (kmock): a node too small gets a
GPUMemoryTooSmall Event and condition before the Job, which is created all the same; a node
large enough gets neither. config.json comes from a loopback stand-in for the hub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubetune_operator.permissions import CLUSTER_RULES
from tests.hub_config_server import ConfigServer, serve_configs
from tests.operator.cluster import FakeCluster
from tests.operator.conftest import RunningOperator
from tests.unit.published_models import LLAMA2_7B

LLAMA = "meta-llama/Llama-2-7b-hf"
SPEC: dict[str, Any] = {
    "task": "language-generation",
    "base": {"model": LLAMA},
    "data": {"train": "pvc://datasets/train.jsonl"},
    "output": {"uri": "pvc://models/out"},
    "maxLength": 512,
    "resources": {"gpus": 1},
    "trainingArgs": {"bf16": True, "per_device_train_batch_size": 1, "gradient_checkpointing": True},
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConfigServer]:
    with serve_configs() as server:
        server.configs[LLAMA] = LLAMA2_7B
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        yield server


async def add_node(cluster: FakeCluster, name: str, mib: int, pool: str) -> None:
    labels = {"nvidia.com/gpu.memory": str(mib), "pool": pool}
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": name, "labels": labels}}
    await cluster.request("POST", "/api/v1/nodes", body)


async def memory_events(cluster: FakeCluster, name: str) -> list[dict[str, Any]]:
    return [
        e for e in await cluster.events() if e["involvedObject"]["name"] == name and e["reason"] == "GPUMemoryTooSmall"
    ]


async def test_a_node_too_small_is_warned_and_the_job_still_created(
    hub: ConfigServer, cluster: FakeCluster, operator: RunningOperator
) -> None:
    await add_node(cluster, "t4", 15360, "small")
    await add_node(cluster, "h100", 81920, "big")
    await cluster.create_ftj("full-on-t4", {**SPEC, "nodeSelector": {"pool": "small"}})
    await cluster.create_ftj("full-on-h100", {**SPEC, "nodeSelector": {"pool": "big"}})
    await cluster.wait_job("full-on-t4-train")
    await cluster.wait_job("full-on-h100-train")

    status = await cluster.wait_status(
        "full-on-t4", lambda s: any(c["type"] == "GPUMemoryTooSmall" for c in s.get("conditions") or [])
    )
    [condition] = [c for c in status["conditions"] if c["type"] == "GPUMemoryTooSmall"]
    assert condition["status"] == "True" and condition["reason"] == "GPUMemoryTooSmall"
    assert "needs about 56." in condition["message"] and "15.0 GiB (node t4" in condition["message"]
    assert "lora: true" in condition["message"]
    [event] = await cluster.wait_for(lambda: memory_events(cluster, "full-on-t4"), message="the Warning Event")
    assert event["type"] == "Warning" and event["message"] == condition["message"]

    big = await cluster.wait_status("full-on-h100", lambda s: s.get("phase") == "Pending")
    assert not any(c["type"] == "GPUMemoryTooSmall" for c in big["conditions"])
    assert await memory_events(cluster, "full-on-h100") == []
    # config.json fetched once for both runs; the node list read with the RBAC it has.
    assert hub.requests == [f"GET /{LLAMA}/resolve/main/config.json"]
    assert any(rule["resources"] == ["nodes"] and "list" in rule["verbs"] for rule in CLUSTER_RULES)
    assert any(method == "GET" and path.startswith("/api/v1/nodes") for method, path, *_ in cluster.emulator.log)
