"""Kopf wiring: watch-event handlers that only hand over to the reconciler.

Registered on import (`kopf run -m kubetune_operator` imports this through the
package), with the indices of `kubetune_operator.indices`. Every event triggers one
level-triggered reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from kubetune_api.resource import API_GROUP, API_VERSION, PLURAL
from kubetune_api.trainer_pod import WATCH_SELECTOR
from kubetune_operator.events import Event
from kubetune_operator.indices import TRAINER_SELECTOR, Key, KopfIndices, owner_key
from kubetune_operator.kube import HttpKubeApi
from kubetune_operator.prometheus import Metrics
from kubetune_operator.reconcile import Reconciler
from kubetune_operator.settings import OperatorSettings, SettingsError

logger = logging.getLogger("kubetune.operator")
# The resources whose watches carry the server-side selector (see kubetune_operator.indices).
TRAINER_RESOURCES = (("batch", "v1", "jobs"), ("", "v1", "pods"))


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


class NoProgressStorage(kopf.ProgressStorage):
    """Keeps no handler progress: only on.create/update/resume handlers (retried over several
    events) record it, and there are none. Kopf's default still clears a copy of the
    essence of every watch event of both storages it writes to. Remove this if such
    handlers are ever added."""

    def fetch(self, *, key: Any, body: kopf.Body) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Kopf settings the operator relies on (also used by the tests' in-process operator)."""
    # Only Normal/Warning events we post ourselves; Kopf's per-handler chatter is off.
    settings.posting.level = logging.WARNING
    settings.posting.enabled = True
    # At the default level (info), Kopf logs "Handler 'pod_event' succeeded." for every watch
    # event of every FineTuneJob, Job and pod: a line formatted and written per event, with
    # nothing in it a user acts on. Warnings and errors still show; --verbose shows it all.
    objects = logging.getLogger("kopf.objects")
    if not objects.isEnabledFor(logging.DEBUG):
        objects.setLevel(logging.WARNING)
    settings.persistence.diffbase_storage = NoDiffBaseStorage()
    settings.persistence.progress_storage = NoProgressStorage()
    # Server-side filtering: only trainer Jobs and pods reach the operator, not every pod of
    # the cluster (the handlers' `labels=` filters alone would be applied after receiving).
    for resource in TRAINER_RESOURCES:
        settings.watching.label_selectors[resource] = WATCH_SELECTOR


def post_event(body: Mapping[str, Any], event: Event) -> None:
    # kopf.event reads only the object's apiVersion, kind and metadata.
    kopf.event(cast(kopf.Body, dict(body)), type=event.type, reason=event.reason, message=event.message)


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
async def finetunejob_event(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    memo["kubetune_indices"].bind(kwargs)
    await memo["kubetune_reconciler"].finetunejob_changed((namespace or "", name))


@kopf.on.event("batch", "v1", "jobs", labels=TRAINER_SELECTOR)
async def job_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile(owner_key(body), memo, kwargs)


@kopf.on.event("", "v1", "pods", labels=TRAINER_SELECTOR)
async def pod_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile(owner_key(body), memo, kwargs)
