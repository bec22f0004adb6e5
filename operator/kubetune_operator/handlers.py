"""Kopf wiring: indices and watch-event handlers that only hand over to the reconciler.

Registered on import (`kopf run -m kubetune_operator` imports this through the
package). Three Kopf indices keep the current FineTuneJobs, trainer Jobs and trainer
pods in memory, keyed by (namespace, FineTuneJob name); Kopf fills them from the watch
streams before it calls any handler, which is what lets a restarted operator see the
Job it created earlier. Every event then triggers one level-triggered reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubetune_api.resource import API_GROUP, API_VERSION, KIND, PLURAL
from kubetune_operator.builders import (
    ANNOTATION_FINETUNEJOB,
    COMPLETION_INDEX_KEY,
    LABEL_FINETUNEJOB,
    LABEL_MANAGED_BY,
    MANAGER,
)
from kubetune_operator.events import Event
from kubetune_operator.kube import HttpKubeApi
from kubetune_operator.prometheus import Metrics
from kubetune_operator.reconcile import Key, Reconciler
from kubetune_operator.settings import OperatorSettings, SettingsError

logger = logging.getLogger("kubetune.operator")

TRAINER_SELECTOR = {LABEL_MANAGED_BY: MANAGER, LABEL_FINETUNEJOB: kopf.PRESENT}


# -- what the indices keep: only the fields the status is derived from ----------------------
# The index functions are `async` although they never await: Kopf runs a sync handler in
# its thread pool, which cost more than the handler itself on every watch event.


def _meta(body: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {key: meta[key] for key in keys if meta.get(key) is not None}


def _owner_key(body: Mapping[str, Any]) -> Key | None:
    meta = body.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(ANNOTATION_FINETUNEJOB) or (meta.get("labels") or {}).get(
        LABEL_FINETUNEJOB
    )
    return (meta["namespace"], name) if name else None


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def finetunejobs(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Key, dict[str, Any]]:
    slim = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": _meta(
            body, "name", "namespace", "uid", "generation", "labels", "creationTimestamp", "deletionTimestamp"
        ),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }
    return {(namespace, name): slim}


@kopf.index("batch", "v1", "jobs", labels=TRAINER_SELECTOR)
async def trainer_jobs(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
    key = _owner_key(body)
    if key is None:
        return None
    return {
        key: {
            "metadata": _meta(body, "name", "namespace", "uid", "annotations", "ownerReferences", "resourceVersion"),
            "spec": {k: v for k, v in (body.get("spec") or {}).items() if k in ("suspend", "backoffLimit")},
            "status": dict(body.get("status") or {}),
        }
    }


@kopf.index("", "v1", "pods", labels=TRAINER_SELECTOR)
async def trainer_pods(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
    key = _owner_key(body)
    if key is None:
        return None
    metadata = _meta(body, "name", "namespace", "uid", "ownerReferences", "creationTimestamp")
    # A multi-node run's pods differ by completion index (which rank's pod, which failed);
    # only that annotation is kept, not all of them.
    index = ((body.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX_KEY)
    if index is not None:
        metadata["annotations"] = {COMPLETION_INDEX_KEY: index}
    return {key: {"metadata": metadata, "status": dict(body.get("status") or {})}}


class KopfIndices:
    """The reconciler's view of the three indices (live objects Kopf keeps current)."""

    def __init__(self) -> None:
        self.ftjs: kopf.Index[Key, dict[str, Any]] | None = None
        self.job_index: kopf.Index[Key, dict[str, Any]] | None = None
        self.pod_index: kopf.Index[Key, dict[str, Any]] | None = None

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        self.ftjs = kwargs["finetunejobs"]
        self.job_index = kwargs["trainer_jobs"]
        self.pod_index = kwargs["trainer_pods"]

    @staticmethod
    def _values(index: kopf.Index[Key, dict[str, Any]] | None, key: Key) -> list[dict[str, Any]]:
        if index is None or key not in index:
            return []
        return list(index[key])

    def finetunejob(self, key: Key) -> dict[str, Any] | None:
        values = self._values(self.ftjs, key)
        return values[0] if values else None

    def jobs(self, key: Key) -> list[dict[str, Any]]:
        return self._values(self.job_index, key)

    def pods(self, key: Key) -> list[dict[str, Any]]:
        return self._values(self.pod_index, key)


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """Keeps and computes no diff-base: nothing here uses on.create/update/field handlers
    or daemons, the only Kopf handlers that read it. Kopf still builds the essence (a
    deep copy of the whole body) for every watch event unless told otherwise; that was
    ~5% of the operator's CPU. Remove this if such handlers are ever added."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Kopf settings the operator relies on (also used by the tests' in-process operator)."""
    # Only Normal/Warning events we post ourselves; Kopf's per-handler chatter is off.
    settings.posting.level = logging.WARNING
    settings.posting.enabled = True
    settings.persistence.diffbase_storage = NoDiffBaseStorage()


def post_event(body: Mapping[str, Any], event: Event) -> None:
    kopf.event(dict(body), type=event.type, reason=event.reason, message=event.message)


# -- lifecycle ----------------------------------------------------------------------------------


@kopf.on.startup()
async def startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    try:
        config = OperatorSettings.from_env()
    except SettingsError as error:
        raise kopf.PermanentError(f"invalid operator setting: {error}") from None
    configure_kopf(settings)
    metrics = Metrics()
    if config.metrics_port:
        server = metrics.serve(config.metrics_port)
        memo["kubetune_metrics_server"] = server
    indices = KopfIndices()
    memo["kubetune_indices"] = indices
    memo["kubetune_reconciler"] = Reconciler(
        api=HttpKubeApi(),
        settings=config,
        indices=indices,
        post_event=post_event,
        metrics=metrics,
    )
    where = ", ".join(config.namespaces) if config.namespaces else "all namespaces"
    logger.info("kubetune operator serving %s; trainer image %s", where, config.trainer_image)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("kubetune_reconciler")
    if reconciler is not None:
        await reconciler.close()
        api = reconciler.api
        if isinstance(api, HttpKubeApi):
            await api.close()
    server = memo.get("kubetune_metrics_server")
    if server is not None:
        server.shutdown()


@kopf.on.probe(id="finetunejobs")
def probe(memo: kopf.Memo, **_: Any) -> int:
    """Liveness detail: how many FineTuneJobs this operator tracks."""
    reconciler: Reconciler | None = memo.get("kubetune_reconciler")
    return len(reconciler.phases) if reconciler is not None else 0


# -- watch events -------------------------------------------------------------------------------


async def _reconcile(key: Key | None, memo: kopf.Memo, kwargs: Mapping[str, Any]) -> None:
    if key is None:
        return
    memo["kubetune_indices"].bind(kwargs)
    await memo["kubetune_reconciler"].reconcile(key)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def finetunejob_event(namespace: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile((namespace, name), memo, kwargs)


@kopf.on.event("batch", "v1", "jobs", labels=TRAINER_SELECTOR)
async def job_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile(_owner_key(body), memo, kwargs)


@kopf.on.event("", "v1", "pods", labels=TRAINER_SELECTOR)
async def pod_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile(_owner_key(body), memo, kwargs)
