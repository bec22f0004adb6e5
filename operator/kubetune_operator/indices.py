"""What the operator keeps in memory: three Kopf indices and the reconciler's view of them.

Kopf fills the indices from the watch streams before it calls any handler, which is what
lets a restarted operator see the Job it created earlier. Each keeps only the fields the
status is derived from, keyed by (namespace, FineTuneJob name). The Job and pod watches
carry a server-side label selector (`names.WATCH_SELECTOR`, set in handlers.configure_kopf):
the API server sends only trainer objects, not every pod of a large cluster.

The index functions are `async` although they never await: Kopf runs a sync handler in
its thread pool, which cost more than the handler itself on every watch event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import kopf

from kubetune_api.resource import API_GROUP, API_VERSION, API_VERSION_STRING, KIND, PLURAL
from kubetune_api.trainer_pod import (
    ANNOTATION_FINETUNEJOB,
    COMPLETION_INDEX_KEY,
    LABEL_FINETUNEJOB,
    LABEL_MANAGED_BY,
    MANAGER,
)

Key = tuple[str, str]  # (namespace, FineTuneJob name)
Body = Mapping[str, Any]
# The client-side filter of the Job and pod handlers (the server-side selector says the same).
TRAINER_SELECTOR: dict[str, Any] = {LABEL_MANAGED_BY: MANAGER, LABEL_FINETUNEJOB: kopf.PRESENT}
INDEX_NAMES = ("finetunejobs", "trainer_jobs", "trainer_pods")


class Indices(Protocol):
    """Where the reconciler looks the current objects up."""

    def finetunejob(self, key: Key) -> Body | None: ...

    def jobs(self, key: Key) -> list[Body]: ...

    def pods(self, key: Key) -> list[Body]: ...


def _meta(body: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {key: meta[key] for key in keys if meta.get(key) is not None}


def owner_key(body: Mapping[str, Any]) -> Key | None:
    """The FineTuneJob a trainer Job or pod belongs to (the exact name is in an annotation)."""
    meta = body.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(ANNOTATION_FINETUNEJOB) or (meta.get("labels") or {}).get(
        LABEL_FINETUNEJOB
    )
    return (meta["namespace"], name) if name else None


@kopf.index(API_GROUP, API_VERSION, PLURAL)
async def finetunejobs(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, dict[str, Any]]:
    metadata = _meta(
        body, "name", "namespace", "uid", "generation", "resourceVersion", "labels", "creationTimestamp",
        "deletionTimestamp",
    )  # fmt: skip
    slim = {
        "apiVersion": API_VERSION_STRING,
        "kind": KIND,
        "metadata": metadata,
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }
    return {(namespace or "", name): slim}


@kopf.index("batch", "v1", "jobs", labels=TRAINER_SELECTOR)
async def trainer_jobs(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
    key = owner_key(body)
    if key is None:
        return None
    metadata = _meta(body, "name", "namespace", "uid", "labels", "annotations", "ownerReferences", "resourceVersion")
    spec = {k: v for k, v in (body.get("spec") or {}).items() if k in ("suspend", "backoffLimit", "parallelism")}
    return {key: {"metadata": metadata, "spec": spec, "status": dict(body.get("status") or {})}}


@kopf.index("", "v1", "pods", labels=TRAINER_SELECTOR)
async def trainer_pods(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
    key = owner_key(body)
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
        self._indices: dict[str, kopf.Index[Key, dict[str, Any]]] = {}

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        """Take the indices from a handler's keyword arguments (Kopf passes them by name)."""
        self._indices = {name: kwargs[name] for name in INDEX_NAMES}

    def _values(self, name: str, key: Key) -> list[Body]:
        index = self._indices.get(name)
        found = index.get(key) if index is not None else None  # one lookup, not two
        return list(found) if found is not None else []

    def finetunejob(self, key: Key) -> Body | None:
        values = self._values("finetunejobs", key)
        return values[0] if values else None

    def jobs(self, key: Key) -> list[Body]:
        return self._values("trainer_jobs", key)

    def pods(self, key: Key) -> list[Body]:
        return self._values("trainer_pods", key)
