"""The preflight memory check before a run's Job is created: config.json and nodes, cached.

The base model's config.json comes from the hub over plain HTTP (the operator image has
no huggingface_hub; HF_ENDPOINT and HF_TOKEN apply, HF_HUB_OFFLINE turns it off), at most
CONFIG_TIMEOUT seconds, once per (model, revision): a failure is remembered for
FAILURE_TTL, so a cluster without internet access pays one timeout per model, not one per
run. pvc:// and local models are not read (a claim is not the operator's to mount). The
node list (`nodes: list`, cluster-scoped) is kept NODES_TTL seconds; without the
permission the operator falls back to KUBETUNE_GPU_MEMORY. Anything unknown means no
warning: the check is advice and never holds a run back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.memory_estimate import EstimateError, estimate_memory
from kubetune_api.model_config import ConfigUnavailable, fetch_hub_config, is_hub_id
from kubetune_operator.gpu_fit import GPU_MEMORY_LABEL, largest_gpu, memory_warning
from kubetune_operator.kube import ApiError, KubeApi
from kubetune_operator.settings import OperatorSettings

logger = logging.getLogger("kubetune.memory")

CONFIG_TIMEOUT = 3.0
FAILURE_TTL = 600.0
NODES_TTL = 60.0
# Configs kept (oldest dropped first): model ids come from users, so the cache is bounded.
MAX_CACHED_CONFIGS = 256
Fetch = Callable[[str, str | None, float], dict[str, Any]]


class MemoryCheck:
    def __init__(
        self,
        api: KubeApi,
        settings: OperatorSettings,
        fetch: Fetch = fetch_hub_config,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.settings, self.fetch, self.clock = api, settings, fetch, clock
        self._configs: OrderedDict[tuple[str, str | None], tuple[float, dict[str, Any] | None]] = OrderedDict()
        self._nodes: tuple[float, list[dict[str, Any]]] | None = None
        self._fetching: dict[tuple[str, str | None], asyncio.Lock] = {}  # one download per key at a time

    async def warning(self, spec: FineTuneJobSpec) -> str | None:
        """The GPUMemoryTooSmall message for `spec`, or None (it fits, or nothing is known).

        Never raises: a config.json that cannot be read or counted is no reason to hold a
        run back (the Job is created after this, whatever it says)."""
        try:
            return await self._warning(spec)
        except Exception as error:  # any failure here only means "no estimate"
            logger.warning("no memory estimate for %s: %r", spec.base.model, error)
            return None

    async def _warning(self, spec: FineTuneJobSpec) -> str | None:
        if spec.resources.gpus == 0:
            return None
        config = await self._config(spec.base.model, spec.base.revision)
        if config is None:
            return None
        try:
            estimate = estimate_memory(config, spec)
        except EstimateError as error:
            logger.info("no memory estimate for %s: %s", spec.base.model, error)
            return None
        gpu = largest_gpu(await self._node_list(), spec.node_selector, self.settings.gpu_memory)
        return memory_warning(estimate, spec, gpu)

    async def _config(self, model: str, revision: str | None) -> dict[str, Any] | None:
        if not is_hub_id(model):
            return None
        key = (model, revision)
        lock = self._fetching.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                return await self._cached_config(key)
        finally:
            if not lock.locked():  # a waiter finds the cached answer; no lock kept per model ever seen
                self._fetching.pop(key, None)

    async def _cached_config(self, key: tuple[str, str | None]) -> dict[str, Any] | None:
        model, revision = key
        cached = self._configs.get(key)
        if cached is not None and (cached[1] is not None or self.clock() < cached[0]):
            return cached[1]
        config: dict[str, Any] | None = None
        try:
            work = asyncio.to_thread(self.fetch, model, revision, CONFIG_TIMEOUT)
            config = await asyncio.wait_for(work, 2 * CONFIG_TIMEOUT)  # the fetch keeps its own timeout too
        except (ConfigUnavailable, asyncio.TimeoutError) as error:
            logger.info("no memory estimate for %s: %s", model, error or "timed out")
        except Exception as error:  # a bad endpoint or reply: remembered like any failure
            logger.warning("no memory estimate for %s: reading its config.json failed: %r", model, error)
        self._configs[key] = (self.clock() + FAILURE_TTL, config)
        self._configs.move_to_end(key)
        while len(self._configs) > MAX_CACHED_CONFIGS:
            self._configs.popitem(last=False)
        return config

    async def _node_list(self) -> list[dict[str, Any]]:
        if self._nodes is not None and self.clock() < self._nodes[0]:
            return self._nodes[1]
        nodes: list[dict[str, Any]] = []
        try:
            nodes = await asyncio.wait_for(self.api.list_nodes(GPU_MEMORY_LABEL), CONFIG_TIMEOUT)
        except (ApiError, asyncio.TimeoutError) as error:
            logger.info("cannot list nodes (%s); the GPU size is the setting's, if any", error or "timed out")
        self._nodes = (self.clock() + NODES_TTL, nodes)
        return nodes
