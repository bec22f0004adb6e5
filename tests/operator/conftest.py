"""Fixtures: the kmock emulator on localhost, the fake cluster, and the real operator
(Kopf in-process, handlers from kubetune_operator) logged in through a kubeconfig."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

import kubetune_operator.handlers  # noqa: F401  (registers the handlers in Kopf's default registry)
from tests.operator.cluster import EmulatorThread, FakeCluster


def write_kubeconfig(path: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Operator settings for tests: fast progress reads, no metrics port, a default output."""
    for name in ("KUBETUNE_NAMESPACES", "KUBETUNE_TRAINER_IMAGE", "KUBETUNE_GPU_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBETUNE_PROGRESS_INTERVAL_SECONDS", "0.2")
    monkeypatch.setenv("KUBETUNE_METRICS_PORT", "0")
    monkeypatch.setenv("KUBETUNE_DEFAULT_OUTPUT", "pvc://models/runs")
    yield


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeCluster]:
    with EmulatorThread() as served:
        emulator, url = served.emulator, served.url
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
        # Both Kopf's login and the operator's own client read the default kubeconfig path.
        monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        async with FakeCluster(emulator, url) as fake:
            yield fake


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # the emulator cannot list namespaces or CRDs
    settings.batching.batch_window = 0.01
    settings.batching.idle_timeout = 1.0
    settings.batching.exit_timeout = 1.0
    settings.watching.reconnect_backoff = 0.1
    settings.networking.request_timeout = 5.0
    settings.posting.enabled = True
    return settings


class RunningOperator:
    """The real operator in a thread of its own, started and stopped as a test needs.

    Kopf, when stopping, waits for every task created after it started, which in the
    test's own event loop would include the test itself; its own loop avoids that and is
    also how an embedding application would run it.
    """

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.stop_flag: threading.Event | None = None
        self.memo: kopf.Memo | None = None
        self.error: BaseException | None = None

    def _run(self, ready: threading.Event) -> None:
        assert self.stop_flag is not None and self.memo is not None
        try:
            asyncio.run(
                kopf.operator(
                    standalone=True,
                    clusterwide=True,
                    settings=kopf_settings(),
                    stop_flag=self.stop_flag,
                    ready_flag=ready,
                    memo=self.memo,
                )
            )
        except BaseException as error:  # surfaced by stop()
            self.error = error

    async def start(self) -> None:
        self.stop_flag = threading.Event()
        self.memo = kopf.Memo()
        self.error = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        await asyncio.to_thread(ready.wait, 10)
        # Ready means Kopf started; handlers run once the startup activity is done.
        for _ in range(500):
            if "kubetune_reconciler" in self.memo:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError(f"the operator did not start: {self.error!r}")

    async def stop(self) -> None:
        if self.thread is None or self.stop_flag is None:
            return
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, 15)
        self.thread = None
        if self.error is not None:
            raise self.error

    @property
    def reconciler(self) -> Any:
        assert self.memo is not None
        return self.memo["kubetune_reconciler"]


@pytest.fixture
async def operator(cluster: FakeCluster, operator_env: None) -> AsyncIterator[RunningOperator]:
    logging.getLogger("kopf").setLevel(logging.INFO)
    running = RunningOperator()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
