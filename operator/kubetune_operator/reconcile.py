"""The reconciler: one FineTuneJob's observed state in, the fewest API writes out.

Level-triggered: every watch event on a FineTuneJob, its Job or its pods calls
`reconcile(key)`, which reads the current state from Kopf's in-memory indices (filled
from the watch streams before any handler runs, also after a restart), creates the Job
if there is none, syncs `suspend`, and patches status only when it differs from what
is already there. So a restarted operator finds the Job it created before and writes
nothing new, and a burst of events for one object costs one status write.

Kopf's own per-object machinery (finalizers, last-handled-configuration annotations,
progress annotations) is deliberately not used: it would add three to four writes to
every FineTuneJob. Garbage collection through the Job's ownerReference removes the Job
and its pods when the FineTuneJob is deleted, so no finalizer is needed either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.validation import InvalidSpecError, validate_spec
from kubetune_operator.builders import (
    ANNOTATION_SPEC_HASH,
    CONTAINER_NAME,
    KUEUE_QUEUE_LABEL,
    Owner,
    build_headless_service,
    build_job,
    spec_hash,
)
from kubetune_operator.events import Event, shared_output_warning, transition_event
from kubetune_operator.kube import KubeApi
from kubetune_operator.progress_status import LOG_LIMIT_BYTES, LOG_TAIL_LINES, progress_from_log, rfc3339, same_progress
from kubetune_operator.prometheus import Metrics
from kubetune_operator.settings import OperatorSettings
from kubetune_operator.status import Observed, desired_status, lead_pod, status_patch

logger = logging.getLogger("kubetune.reconcile")

Key = tuple[str, str]  # (namespace, FineTuneJob name)
Body = Mapping[str, Any]
TERMINAL = frozenset({"Succeeded", "Failed"})
MAX_RETRY_DELAY = 60.0
# How long a status change waits before it is written (see Reconciler.reconcile): long
# enough for the related watch events of one change to arrive, short for a human.
STATUS_DELAY = 0.2
# How long a due status write waits at most for the Job's status to catch up with its pod.
MAX_SETTLE = 2.0
JOB_CREATED = "JobCreated"  # the Event reason kubetune_operator.events gives a first Pending status


class Indices(Protocol):
    """Where the current objects are looked up (Kopf indices in the operator)."""

    def finetunejob(self, key: Key) -> Body | None: ...

    def jobs(self, key: Key) -> list[Body]: ...

    def pods(self, key: Key) -> list[Body]: ...


class RetryableError(RuntimeError):
    """Not done yet for a reason that passes by itself; reconcile again later."""


@dataclass
class _CheckedSpec:
    raw: Body
    spec: FineTuneJobSpec | None
    invalid: str | None = None  # why the spec cannot run (then spec is None)
    _hash: str | None = None

    @property
    def hash(self) -> str | None:
        if self._hash is None and self.spec is not None:
            self._hash = spec_hash(self.spec)
        return self._hash


@dataclass
class _Poll:
    pod: str
    task: asyncio.Task[None]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _owned_by(obj: Body, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])


def _job_lags_pods(job: Body, pods: list[Body]) -> bool:
    """Whether the Job controller has yet to record what the Job's pods show: a running pod
    without the Job's startTime, or more finished pods than the Job counts."""
    status = job.get("status") or {}
    conditions = status.get("conditions") or []
    if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
        return False
    phases = [(p.get("status") or {}).get("phase") for p in pods]
    if "Running" in phases and not status.get("startTime"):
        return True
    finished = sum(1 for phase in phases if phase in ("Succeeded", "Failed"))
    return finished > (status.get("succeeded") or 0) + (status.get("failed") or 0)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        settings: OperatorSettings,
        indices: Indices,
        post_event: Callable[[Body, Event], None],
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        status_delay: float = STATUS_DELAY,
    ) -> None:
        self.api = api
        self.settings = settings
        self.indices = indices
        self.post_event = post_event
        self.metrics = metrics
        self.clock = clock
        self.status_delay = status_delay
        self._flushes: dict[Key, asyncio.TimerHandle] = {}
        self._announced: set[Key] = set()  # JobCreated posted, status not written yet
        self._unsettled_since: dict[Key, datetime] = {}  # a due write waits for the Job
        self._locks: dict[Key, asyncio.Lock] = {}
        self._written: dict[Key, dict[str, Any]] = {}  # status the server has, after our patches
        self._created: dict[str, dict[str, Any]] = {}  # FineTuneJob uid -> Job we created, until indexed
        self._spec_warned: set[tuple[str, int | None]] = set()
        self._specs: dict[Key, _CheckedSpec] = {}
        self._polls: dict[Key, _Poll] = {}
        self._failures: dict[Key, int] = {}
        self._retries: dict[Key, asyncio.TimerHandle] = {}
        self.phases: dict[Key, str] = {}

    # -- entry points -------------------------------------------------------------------

    async def reconcile(self, key: Key, flush: bool = False) -> None:
        """Bring one FineTuneJob's Job and status in line with what is observed.

        The Job is created (or suspended) at once; a status change is written
        `status_delay` seconds later (`flush`), folding in the events that came meanwhile.
        """
        if not self.settings.serves(key[0]):
            return
        try:
            async with self._lock(key):
                await self._reconcile(key, flush=flush)
        except Exception as error:
            self._failed(key, error)
        else:
            self._failures.pop(key, None)

    async def close(self) -> None:
        for handle in [*self._retries.values(), *self._flushes.values()]:
            handle.cancel()
        polls = [poll.task for poll in self._polls.values()]
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        self._polls.clear()

    # -- the work -------------------------------------------------------------------------

    async def _reconcile(self, key: Key, flush: bool = False) -> None:
        ftj = self.indices.finetunejob(key)
        if ftj is None or ftj["metadata"].get("deletionTimestamp"):
            self._forget(key)
            return
        meta = ftj["metadata"]
        uid: str = meta["uid"]
        generation = meta.get("generation")
        raw_spec = ftj.get("spec") or {}
        queued = bool((meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL))

        checked = self._checked_spec(key, raw_spec)
        spec, invalid = checked.spec, checked.invalid

        job = next((j for j in self.indices.jobs(key) if _owned_by(j, uid)), None)
        if job is not None:
            self._created.pop(uid, None)
        elif spec is not None:
            job = self._created.get(uid) or await self._create_job(ftj, spec)

        if job is not None and spec is not None:
            await self._sync_suspend(job, spec.suspend, queued)
            self._check_spec_unchanged(ftj, job, checked)

        job_uid = (job or {}).get("metadata", {}).get("uid")
        pods = [p for p in self.indices.pods(key) if job_uid is None or _owned_by(p, job_uid)]
        observed = Observed(
            generation=generation,
            suspend=bool(raw_spec.get("suspend")),
            queued=queued,
            invalid=invalid,
            job=job,
            pods=pods,
        )
        previous = self._known_status(key, ftj)
        desired = desired_status(observed, previous, rfc3339(self.clock()))
        patch = status_patch(previous, desired)

        phase = desired["phase"]
        # Rank 0's pod (the only one in a single-node run): progress lines come from it.
        pod = lead_pod(pods)
        if patch and self.status_delay > 0 and (not flush or self._settling(key, job, pods)):
            # Write a little later, from whatever is observed then: the Job's and the pod's
            # watch streams are not ordered, and the Job controller records a pod's change
            # after the pod shows it, so one change often arrives as two events; written
            # at once, each would be a status write.
            self._schedule_flush(key)
            patch = {}
        elif phase in TERMINAL and previous.get("phase") not in TERMINAL and pod is not None:
            # The last word on progress, in the same write as the outcome.
            progress = await self._read_progress(key[0], pod["metadata"]["name"])
            if progress is not None and not same_progress(previous.get("progress"), progress):
                patch["progress"] = progress

        if patch:
            if not await self.api.patch_finetunejob_status(key[0], key[1], patch):
                self._forget(key)  # deleted meanwhile
                return
            self._written[key] = _merged(previous, patch)
            self._unsettled_since.pop(key, None)
            event = transition_event(previous, desired, (job or {}).get("metadata", {}).get("name"))
            if event is not None and not (event.reason == JOB_CREATED and key in self._announced):
                self.post_event(ftj, event)
            self._announced.discard(key)
        self._set_phase(key, phase)

        if phase == "Running" and pod is not None:
            self._start_polling(key, pod["metadata"]["name"])
        else:
            self._stop_polling(key)

    async def _create_job(self, ftj: Body, spec: FineTuneJobSpec) -> dict[str, Any]:
        owner = Owner.from_body(ftj)
        manifest = build_job(owner, spec, self.settings)
        if spec.nodes > 1:
            # Before the Job, so the pods' DNS names exist when they start. Its name carries
            # the FineTuneJob's uid: 409 means it is ours, from an earlier try.
            await self.api.create_service(owner.namespace, build_headless_service(owner, spec))
        created = await self.api.create_job(owner.namespace, manifest)
        if not created:
            others = [j for j in self.indices.jobs((owner.namespace, owner.name)) if not _owned_by(j, owner.uid)]
            if others:
                # A Job left by a deleted FineTuneJob of the same name: wait for its garbage collection.
                raise RetryableError(f"Job {manifest['metadata']['name']} still belongs to a deleted FineTuneJob")
        else:
            # Told when it happens, not with the (delayed) status write: the pod may be
            # running by then, and the status go straight to Running.
            self.post_event(ftj, Event("Normal", JOB_CREATED, f"created Job {manifest['metadata']['name']}"))
            warning = shared_output_warning(spec.nodes, spec.output.uri if spec.output else None)
            if warning is not None:
                self.post_event(ftj, warning)
            self._announced.add((owner.namespace, owner.name))
            if self.metrics is not None:
                created_at = _parse_time(ftj["metadata"].get("creationTimestamp"))
                if created_at is not None:
                    self.metrics.job_creation_seconds.observe(max(0.0, (self.clock() - created_at).total_seconds()))
        self._created[owner.uid] = manifest
        return manifest

    async def _sync_suspend(self, job: Body, suspend: bool, queued: bool) -> None:
        """Carry spec.suspend to the Job; with Kueue, only Kueue unsuspends."""
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
            return  # a finished Job ignores suspend
        current = bool((job.get("spec") or {}).get("suspend"))
        if current == suspend or (queued and not suspend):
            return
        # Sent again if another event comes before the Job watch shows the change: rare and harmless.
        await self.api.patch_job(job["metadata"]["namespace"], job["metadata"]["name"], {"spec": {"suspend": suspend}})

    def _checked_spec(self, key: Key, raw_spec: Body) -> _CheckedSpec:
        """The validated spec, cached while the raw spec is equal: every watch event on the
        FineTuneJob, its Job or its pods reconciles, and validating plus hashing the spec
        was a tenth of the operator's CPU per event."""
        cached = self._specs.get(key)
        if cached is not None and cached.raw == raw_spec:
            return cached
        try:
            spec = validate_spec(raw_spec, namespace=key[0], name=key[1], policy=self.settings.policy)
            checked = _CheckedSpec(raw_spec, spec)
        except InvalidSpecError as error:
            checked = _CheckedSpec(raw_spec, None, str(error))
        self._specs[key] = checked
        return checked

    def _check_spec_unchanged(self, ftj: Body, job: Body, checked: _CheckedSpec) -> None:
        """CEL keeps the spec immutable where it can; free-form fields are checked here."""
        built_from = (job.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_SPEC_HASH)
        if built_from is None or built_from == checked.hash:
            return
        marker = (ftj["metadata"]["uid"], ftj["metadata"].get("generation"))
        if marker not in self._spec_warned:
            self._spec_warned.add(marker)
            self.post_event(
                ftj,
                Event(
                    "Warning",
                    "SpecChangeIgnored",
                    "the spec changed after the Job was created; only spec.suspend takes effect. "
                    "Delete and re-create the FineTuneJob to run the new spec.",
                ),
            )

    def _known_status(self, key: Key, ftj: Body) -> dict[str, Any]:
        written = self._written.get(key)
        return dict(written) if written is not None else dict(ftj.get("status") or {})

    # -- progress ---------------------------------------------------------------------------

    async def _read_progress(self, namespace: str, pod: str) -> dict[str, Any] | None:
        text = await self.api.read_pod_log(namespace, pod, CONTAINER_NAME, LOG_TAIL_LINES, LOG_LIMIT_BYTES)
        return progress_from_log(text, self.clock())

    async def poll_progress_once(self, key: Key, pod: str) -> None:
        """One read of the pod log tail; one status write if the progress moved."""
        progress = await self._read_progress(key[0], pod)
        if progress is None:
            return
        async with self._lock(key):
            ftj = self.indices.finetunejob(key)
            if ftj is None:
                return
            previous = self._known_status(key, ftj)
            if previous.get("phase") != "Running" or same_progress(previous.get("progress"), progress):
                return
            if await self.api.patch_finetunejob_status(key[0], key[1], {"progress": progress}):
                self._written[key] = {**previous, "progress": progress}

    async def _poll_loop(self, key: Key, pod: str) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_interval_seconds)
            try:
                await self.poll_progress_once(key, pod)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a failed read is retried on the next tick
                logger.warning("reading progress of %s/%s: %s", key[0], key[1], error)
                if self.metrics is not None:
                    self.metrics.reconcile_errors.inc()

    def _start_polling(self, key: Key, pod: str) -> None:
        current = self._polls.get(key)
        if current is not None and current.pod == pod and not current.task.done():
            return
        self._stop_polling(key)
        self._polls[key] = _Poll(pod, asyncio.create_task(self._poll_loop(key, pod), name=f"progress {key}"))

    def _stop_polling(self, key: Key) -> None:
        poll = self._polls.pop(key, None)
        if poll is not None:
            poll.task.cancel()

    # -- bookkeeping ------------------------------------------------------------------------

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _set_phase(self, key: Key, phase: str | None) -> None:
        old = self.phases.pop(key, None) if phase is None else self.phases.get(key)
        if phase is not None:
            self.phases[key] = phase
        if self.metrics is not None:
            self.metrics.phase_changed(old, phase)

    def _forget(self, key: Key) -> None:
        self._stop_polling(key)
        self._specs.pop(key, None)
        self._announced.discard(key)
        self._unsettled_since.pop(key, None)
        flush = self._flushes.pop(key, None)
        if flush is not None:
            flush.cancel()
        self._written.pop(key, None)
        self._failures.pop(key, None)
        handle = self._retries.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._set_phase(key, None)

    def _failed(self, key: Key, error: Exception) -> None:
        if self.metrics is not None:
            self.metrics.reconcile_errors.inc()
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(MAX_RETRY_DELAY, 0.5 * 2 ** (failures - 1))
        logger.warning("reconciling %s/%s failed (retry in %.1fs): %s", key[0], key[1], delay, error)
        old = self._retries.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._retries[key] = loop.call_later(delay, lambda: asyncio.ensure_future(self._retry(key)))

    def _settling(self, key: Key, job: Body | None, pods: list[Body]) -> bool:
        """At a due write: whether to wait a little more because the Job has not caught up
        with its pod yet (bounded by MAX_SETTLE from the first postponed change)."""
        if job is None or not _job_lags_pods(job, pods):
            self._unsettled_since.pop(key, None)
            return False
        since = self._unsettled_since.setdefault(key, self.clock())
        return (self.clock() - since).total_seconds() < MAX_SETTLE

    def _schedule_flush(self, key: Key) -> None:
        if key in self._flushes:
            return  # one write is due already; it will see this change too
        loop = asyncio.get_running_loop()
        self._flushes[key] = loop.call_later(self.status_delay, lambda: asyncio.ensure_future(self._flush(key)))

    async def _flush(self, key: Key) -> None:
        self._flushes.pop(key, None)
        await self.reconcile(key, flush=True)

    async def _retry(self, key: Key) -> None:
        self._retries.pop(key, None)
        await self.reconcile(key)


def _merged(previous: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`previous` with a top-level merge patch applied (None removes a key)."""
    result = dict(previous)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def first(values: Iterable[Body] | None) -> Body | None:
    return next(iter(values or ()), None)
