"""The preflight memory check: which GPU a run may land on, the warning, and the caches."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.model_config import ConfigUnavailable
from kubetune_api.outcomes import Reason
from kubetune_api.status_model import FineTuneJobStatus
from kubetune_operator.conditions import build_conditions, memory_warning_of
from kubetune_operator.gpu_fit import Gpu, largest_gpu
from kubetune_operator.kube import ApiError, KubeApi
from kubetune_operator.memory_check import FAILURE_TTL, MemoryCheck
from kubetune_operator.settings import OperatorSettings, SettingsError
from kubetune_operator.status import Observed, desired_status, frozen_status
from tests.unit.published_models import LLAMA2_7B

LLAMA = "meta-llama/Llama-2-7b-hf"


def node(name: str, mib: str | None, **labels: str) -> dict[str, Any]:
    found = dict(labels) | ({"nvidia.com/gpu.memory": mib} if mib is not None else {})
    return {"metadata": {"name": name, "labels": found}}


def spec(**fields: Any) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate(
        {
            "task": "language-generation",
            "base": {"model": LLAMA},
            "data": {"train": "s3://b/t.jsonl"},
            "output": {"uri": "s3://b/o"},
            "maxLength": 512,
            "trainingArgs": {"bf16": True, "per_device_train_batch_size": 1, "gradient_checkpointing": True},
            **fields,
        }
    )


class Nodes:
    def __init__(self, nodes: list[dict[str, Any]], error: Exception | None = None) -> None:
        self.nodes, self.error, self.calls = nodes, error, 0

    async def list_nodes(self, label_selector: str) -> list[dict[str, Any]]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.nodes


def check(api: Nodes, fetched: list[str], gpu_memory: int | None = None, **kwargs: Any) -> MemoryCheck:
    def fetch(model: str, revision: str | None, timeout: float) -> dict[str, Any]:
        fetched.append(model)
        if model != LLAMA:
            raise ConfigUnavailable("not on the hub")
        return LLAMA2_7B

    return MemoryCheck(cast(KubeApi, api), OperatorSettings(gpu_memory=gpu_memory), fetch=fetch, **kwargs)


def test_largest_gpu_among_the_nodes_the_selector_matches() -> None:
    nodes = [node("a100", "81920", pool="big"), node("t4", "15360", pool="small"), node("cpu", None, pool="big")]
    assert largest_gpu(nodes, {}, None) == Gpu(81920 * 2**20, "node a100, label nvidia.com/gpu.memory")
    assert largest_gpu(nodes, {"pool": "small"}, None) == Gpu(15360 * 2**20, "node t4, label nvidia.com/gpu.memory")
    # No labelled node matches: the setting, else nothing to compare with.
    assert largest_gpu(nodes, {"pool": "none"}, 24 * 2**30) == Gpu(24 * 2**30, "the operator's KUBETUNE_GPU_MEMORY")
    assert largest_gpu([node("x", "lots")], {}, None) is None


async def test_full_fine_tuning_on_a_small_gpu_is_warned_with_what_to_change() -> None:
    fetched: list[str] = []
    memory = check(Nodes([node("t4", "15360")]), fetched)
    warning = await memory.warning(spec())
    assert warning is not None
    assert "the largest GPU it can land on has 15.0 GiB (node t4" in warning
    assert "lora: true" in warning and "quantize: true with lora" in warning
    assert "gradient_checkpointing" not in warning  # already on
    assert await memory.warning(spec(quantize=True, lora=True)) is None  # QLoRA fits a T4
    assert fetched == [LLAMA]  # one download per (model, revision)


async def test_nothing_known_means_no_warning() -> None:
    fetched: list[str] = []
    memory = check(Nodes([]), fetched)
    assert await memory.warning(spec()) is None  # no labelled node, no setting
    assert await memory.warning(spec(base={"model": "pvc://models/llama"})) is None  # not read at all
    assert await memory.warning(spec(resources={"gpus": 0})) is None  # a CPU run
    assert fetched == [LLAMA]


async def test_without_node_permission_the_setting_counts() -> None:
    api = Nodes([], error=ApiError(403, "listing nodes", b'{"message": "forbidden"}'))
    warning = await check(api, [], gpu_memory=40 * 2**30).warning(spec())
    assert warning is not None and "40.0 GiB (the operator's KUBETUNE_GPU_MEMORY)" in warning


async def test_an_unreachable_hub_is_asked_again_only_after_a_while() -> None:
    now = [0.0]
    fetched: list[str] = []
    memory = check(Nodes([node("t4", "15360")]), fetched, clock=lambda: now[0])
    missing = spec(base={"model": "org/private"})
    assert await memory.warning(missing) is None
    assert await memory.warning(missing) is None
    assert fetched == ["org/private"]
    now[0] = FAILURE_TTL + 1
    await memory.warning(missing)
    assert fetched == ["org/private", "org/private"]


async def test_a_hanging_fetch_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kubetune_operator.memory_check.CONFIG_TIMEOUT", 0.05)

    def hang(model: str, revision: str | None, timeout: float) -> dict[str, Any]:
        import time

        time.sleep(0.5)
        return LLAMA2_7B

    memory = MemoryCheck(cast(KubeApi, Nodes([node("t4", "15360")])), OperatorSettings(), fetch=hang)
    started = asyncio.get_running_loop().time()
    assert await memory.warning(spec()) is None
    assert asyncio.get_running_loop().time() - started < 0.4


def test_the_condition_stays_for_the_life_of_the_run() -> None:
    message = "the run may not fit its GPU: ..."
    first = desired_status(Observed(generation=1, suspend=False, memory_warning=message), {}, "t0")
    assert memory_warning_of(first) == message
    [condition] = [c for c in first["conditions"] if c["type"] == Reason.GPU_MEMORY_TOO_SMALL]
    assert condition["status"] == "True" and condition["reason"] == "GPUMemoryTooSmall"
    # A restarted operator does not check again: the status keeps it, also once finished.
    later = desired_status(Observed(generation=1, suspend=False), first, "t1")
    assert memory_warning_of(later) == message
    finished = frozen_status({**later, "phase": "Failed"}, 1, False, "t2")
    assert memory_warning_of(finished) == message
    assert memory_warning_of({"conditions": build_conditions("Pending", False, "Pending", "", [], 1, "t")}) is None


def test_gpu_memory_setting_is_checked() -> None:
    assert OperatorSettings.from_env({"KUBETUNE_GPU_MEMORY": "80Gi"}).gpu_memory == 80 * 2**30
    assert OperatorSettings.from_env({}).gpu_memory is None
    with pytest.raises(SettingsError, match="KUBETUNE_GPU_MEMORY"):
        OperatorSettings.from_env({"KUBETUNE_GPU_MEMORY": "big"})


async def test_a_config_that_breaks_the_estimate_never_holds_the_run_back() -> None:
    calls: list[str] = []

    def fetch(model: str, revision: str | None, timeout: float) -> dict[str, Any]:
        calls.append(model)
        if model == LLAMA:
            return {**LLAMA2_7B, "intermediate_size": [11008]}  # a config the count cannot read
        raise ValueError("unknown url type: 'hub.internal/...'")  # a bad HF_ENDPOINT

    memory = MemoryCheck(cast(KubeApi, Nodes([node("t4", "15360")])), OperatorSettings(), fetch=fetch)
    assert await memory.warning(spec()) is None
    other = spec(base={"model": "org/other"})
    assert await memory.warning(other) is None
    assert await memory.warning(other) is None
    assert calls == [LLAMA, "org/other"]  # the failed read is remembered, not retried per reconcile


async def test_the_config_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import kubetune_operator.memory_check as memory_check

    monkeypatch.setattr(memory_check, "MAX_CACHED_CONFIGS", 3)
    fetched: list[str] = []
    memory = check(Nodes([]), fetched)
    for index in range(5):
        await memory.warning(spec(base={"model": f"org/model-{index}"}))
    assert len(memory._configs) == 3 and len(memory._fetching) == 0
    await memory.warning(spec(base={"model": "org/model-0"}))  # dropped first, so read again
    assert fetched.count("org/model-0") == 2


async def test_the_warning_fits_the_status_schema_the_api_server_enforces() -> None:
    # The API server validates a status write against the CRD's status schema (condition
    # messages at most 4096 characters): a longer warning would make every status patch fail.
    warning = await check(Nodes([node("t4", "15360")]), []).warning(spec())
    assert warning is not None
    status = desired_status(Observed(generation=1, suspend=False, memory_warning=warning), {}, "2026-12-02T00:00:00Z")
    FineTuneJobStatus.model_validate(status)
    assert len(warning) <= 4096
