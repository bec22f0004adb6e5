"""The reconciler: one FineTuneJob's observed state in, the fewest API writes out.

Level-triggered: every watch event on a FineTuneJob, its Job or its pods calls
`reconcile(key)`, which reads the current state from Kopf's in-memory indices (filled
from the watch streams before any handler runs, also after a restart), creates the Job
if there is none, syncs `suspend`, and patches status only when it differs from what
the server has. So a restarted operator finds the Job it created before and writes
nothing new, and a burst of events for one object costs one status write.

Status is the record: once it says Succeeded or Failed, no Job is created again and the
outcome is not derived again, whatever happens to the Job and its pods afterwards.

Kopf's own per-object machinery (finalizers, last-handled-configuration annotations,
progress annotations) is deliberately not used: it would add three to four writes to
every FineTuneJob. Garbage collection through the ownerReferences removes the Job, its
pods and a distributed run's Service and NetworkPolicy when the FineTuneJob is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from kubetune_api.outcomes import TERMINAL_PHASES, Reason
from kubetune_operator import merge_patch
from kubetune_operator.attempts import lead_pod
from kubetune_operator.builders import KUEUE_QUEUE_LABEL, spec_changed
from kubetune_operator.conditions import SPEC_CHANGE_MESSAGE
from kubetune_operator.events import Event, job_created_event, shared_output_warning, transition_event
from kubetune_operator.indices import Body, Indices, Key
from kubetune_operator.job_creation import RetryableError, create_run
from kubetune_operator.kube import KubeApi, NotFound
from kubetune_operator.kueue import WorkloadPending, set_workload_active
from kubetune_operator.memory_check import MemoryCheck
from kubetune_operator.pod_template import Owner
from kubetune_operator.progress_status import parse_time, read_final_progress, read_progress, rfc3339, same_progress
from kubetune_operator.prometheus import Metrics
from kubetune_operator.run_state import CheckedSpec, ProgressReader, RunState, StatusCache
from kubetune_operator.settings import OperatorSettings
from kubetune_operator.status import Observed, desired_status, expected_artifact, frozen_status, is_record, status_patch
from kubetune_operator.views import JobView, PodView, pod_views

logger = logging.getLogger("kubetune.reconcile")

MAX_RETRY_DELAY = 60.0
# How long a status change waits before it is written (see Reconciler.reconcile): long
# enough for the related watch events of one change to arrive, short for a human.
STATUS_DELAY = 0.2
# How long a due status write waits at most for the Job's status to catch up with its pod.
MAX_SETTLE = 2.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
        self.runs: dict[Key, RunState] = {}
        self.memory = MemoryCheck(api, settings)

    @property
    def phases(self) -> dict[Key, str]:
        """The phase of every FineTuneJob this operator tracks."""
        return {key: state.phase for key, state in self.runs.items() if state.phase is not None}

    # -- entry points -------------------------------------------------------------------

    async def reconcile(self, key: Key, flush: bool = False) -> None:
        """Bring one FineTuneJob's Job and status in line with what is observed.

        The Job is created (or suspended) at once; a status change is written
        `status_delay` seconds later (`flush`), folding in the events that came meanwhile.
        """
        if not self.settings.serves(key[0]):
            return
        ftj = self.indices.finetunejob(key)
        if ftj is None or ftj["metadata"].get("deletionTimestamp"):
            self._forget(key)
            return
        state = self._state(key, ftj["metadata"]["uid"])
        try:
            async with state.lock:
                if self.runs.get(key) is state:  # not forgotten or replaced while waiting
                    await self._reconcile(key, state, flush)
        except Exception as error:
            self._failed(key, state, error)
        else:
            if state.create_problem is None or state.create_problem.final:
                state.failures = 0

    async def finetunejob_changed(self, key: Key) -> None:
        """The FineTuneJob's own watch event: reconcile, unless it is our latest write coming back."""
        ftj = self.indices.finetunejob(key)
        state = self.runs.get(key)
        if ftj is not None and state is not None and state.is_own_write(ftj["metadata"]):
            return
        await self.reconcile(key)

    async def close(self) -> None:
        tasks = [state.progress.task for state in self.runs.values() if state.progress is not None]
        for state in self.runs.values():
            state.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the work -------------------------------------------------------------------------

    async def _reconcile(self, key: Key, state: RunState, flush: bool) -> None:
        ftj = self.indices.finetunejob(key)
        if ftj is None:
            return
        meta = ftj["metadata"]
        generation = meta.get("generation")
        raw_spec = ftj.get("spec") or {}
        checked = state.checked_spec(raw_spec, key, self.settings.policy)
        known = self._known_status(state, ftj)
        job = self._our_job(key, state)
        if known.get("phase") in TERMINAL_PHASES and is_record(known, job, state.wrote_phase):
            await self._keep_record(key, state, ftj, known, checked)
            return

        if job is None and checked.spec is not None and not (state.create_problem and state.create_problem.final):
            job = await self._create(key, state, ftj, checked)
        view = JobView(job) if job is not None else None
        if view is not None and checked.spec is not None:
            await self._sync_suspend(key, state, view, checked.spec.suspend)

        ignored = spec_changed(view.spec_hash if view else known.get("specHash"), checked.hash)
        if ignored:
            self._warn_spec_change(state, ftj, generation)
        # A Job just sent (no uid yet) has no pods; the name's pods may be a namesake's.
        owner = view.uid if view is not None else None
        pods = [p for p in self.indices.pods(key) if owner is not None and PodView(p).owned_by(owner)]
        views = pod_views(pods)
        state.disrupted |= {pod.uid for pod in views if pod.failed and pod.disruption is not None}
        spec = checked.spec
        observed = Observed(
            generation=known.get("observedGeneration") if ignored else generation,
            suspend=bool(raw_spec.get("suspend")),
            queued=view is not None and KUEUE_QUEUE_LABEL in view.labels,
            invalid=checked.invalid,
            job=job,
            pods=pods,
            create_problem=state.create_problem if job is None else None,
            expected_artifact=expected_artifact(spec),
            disrupted=len(state.disrupted),
            max_disruptions=spec.max_disruptions if spec is not None else None,
            spec_change_ignored=ignored,
            memory_warning=state.memory_warning,
        )
        desired = desired_status(observed, known, rfc3339(self.clock()))
        patch = status_patch(known, desired)
        phase = desired["phase"]
        lead = lead_pod(views)
        if patch and self.status_delay > 0 and (not flush or self._settling(state, view, views)):
            # Write a little later, from whatever is observed then: the Job's and the pod's
            # watch streams are not ordered, and the Job controller records a pod's change
            # after the pod shows it, so one change often arrives as two events; written
            # at once, each would be a status write.
            self._schedule_flush(key, state)
            patch = {}
        elif phase in TERMINAL_PHASES and lead is not None:
            # The last word on progress, in the same write as the outcome (best-effort).
            progress = await read_final_progress(self.api, key[0], lead.name, self.clock)
            if progress is not None and not same_progress(known.get("progress"), progress):
                patch.update(merge_patch.diff(known, {"progress": progress}, ("progress",)))

        if patch:
            if not await self._write(key, state, ftj, known, patch):
                return
            event = transition_event(known, desired, view.name if view else None)
            if event is not None and not (event.reason == Reason.JOB_CREATED and state.announced):
                self.post_event(ftj, event)
            state.announced = False
        self._set_phase(state, phase)
        if phase == "Running" and lead is not None:
            self._start_progress(key, state, lead.name)
        else:
            state.stop_progress()
        if job is None and state.create_problem is not None and not state.create_problem.final:
            self._schedule_retry(key, state)  # quota freed, webhook fixed, conflicting Job removed

    async def _keep_record(
        self, key: Key, state: RunState, ftj: Body, known: dict[str, Any], checked: CheckedSpec
    ) -> None:
        """A finished run: the outcome stays as recorded; only the generation it describes moves."""
        state.stop_progress()
        self._set_phase(state, known["phase"])
        # What we wrote ourselves, while we remember it: an edit to the record is undone.
        cached = state.cache.status if state.cache is not None else {}
        record = cached if cached.get("phase") in TERMINAL_PHASES else known
        ignored = spec_changed(record.get("specHash"), checked.hash)
        desired = frozen_status(record, ftj["metadata"].get("generation"), ignored, rfc3339(self.clock()))
        patch = status_patch(known, desired)
        if patch and not await self._write(key, state, ftj, known, patch):
            return
        if known.get("reason") == Reason.TOO_MANY_DISRUPTIONS and not state.job_deleted:
            # The Job would go on retrying for free (its podFailurePolicy ignores disruptions).
            job = self._our_job(key, state)
            if job is not None and not JobView(job).finished:
                await self.api.delete_job(key[0], JobView(job).name)
            state.job_deleted = True

    def _our_job(self, key: Key, state: RunState) -> dict[str, Any] | None:
        job = next((dict(j) for j in self.indices.jobs(key) if JobView(j).owned_by(state.uid)), None)
        if job is not None:
            state.created_job = None
            return job
        return state.created_job

    async def _create(self, key: Key, state: RunState, ftj: Body, checked: CheckedSpec) -> dict[str, Any] | None:
        assert checked.spec is not None
        spec = checked.spec
        if not state.memory_checked:  # a warning, not a refusal: the estimate may be wrong
            state.memory_checked, state.memory_warning = True, await self.memory.warning(spec)
            if state.memory_warning:
                self.post_event(ftj, Event("Warning", Reason.GPU_MEMORY_TOO_SMALL, state.memory_warning))
        outcome = await create_run(self.api, Owner.from_body(ftj), spec, self.settings)
        state.create_problem = outcome.problem
        if outcome.created and outcome.job is not None:
            # Told when it happens, not with the (delayed) status write: the pod may be
            # running by then, and the status go straight to Running.
            self.post_event(ftj, job_created_event(outcome.job["metadata"]["name"]))
            warning = shared_output_warning(spec.nodes, spec.output.work_uri if spec.output else None)
            if warning is not None:
                self.post_event(ftj, warning)
            state.announced = True
            created_at = parse_time(ftj["metadata"].get("creationTimestamp"))
            if self.metrics is not None and created_at is not None:
                self.metrics.job_creation_seconds.observe(max(0.0, (self.clock() - created_at).total_seconds()))
        state.created_job = outcome.job
        return outcome.job

    async def _sync_suspend(self, key: Key, state: RunState, job: JobView, suspend: bool) -> None:
        """Carry spec.suspend to the Job; a Kueue-managed Job's through its Workload (see kueue)."""
        if job.finished or job.uid is None:
            return  # a finished Job ignores suspend; a Job just sent has no Workload yet
        if KUEUE_QUEUE_LABEL not in job.labels:
            if job.suspended != suspend:
                # Sent again if another event comes before the Job watch shows it: rare and harmless.
                await self.api.patch_job(key[0], job.name, {"spec": {"suspend": suspend}})
            return
        if state.workload_active == (not suspend):
            return
        try:
            await set_workload_active(self.api, key[0], job, active=not suspend)
        except WorkloadPending as waiting:
            raise RetryableError(str(waiting)) from None
        state.workload_active = not suspend

    def _warn_spec_change(self, state: RunState, ftj: Body, generation: int | None) -> None:
        if state.warned_generation != generation:
            state.warned_generation = generation
            self.post_event(ftj, Event("Warning", Reason.SPEC_CHANGE_IGNORED, SPEC_CHANGE_MESSAGE))

    # -- status writes ------------------------------------------------------------------------

    def _known_status(self, state: RunState, ftj: Body) -> dict[str, Any]:
        indexed = ftj.get("status") or {}
        if state.cache is None:
            return dict(indexed)
        return state.cache.known(ftj["metadata"].get("resourceVersion"), indexed)

    async def _write(
        self, key: Key, state: RunState, ftj: Body, previous: Mapping[str, Any], patch: dict[str, Any]
    ) -> bool:
        """Send a status patch; False when the FineTuneJob is gone (then it is forgotten)."""
        based_on = ftj["metadata"].get("resourceVersion")
        try:
            version = await self.api.patch_finetunejob_status(key[0], key[1], patch)
        except NotFound:
            self._forget(key)
            return False
        if state.cache is None:
            state.cache = StatusCache(dict(previous), based_on)
        state.cache.written(based_on, patch, version or None)
        state.unsettled_since = None
        return True

    # -- progress ---------------------------------------------------------------------------

    async def poll_progress_once(self, key: Key, pod: str) -> None:
        """One read of the pod log tail; one status write if the progress moved."""
        progress = await read_progress(self.api, key[0], pod, self.clock)
        state = self.runs.get(key)
        if progress is None or state is None:
            return
        async with state.lock:
            ftj = self.indices.finetunejob(key)
            if ftj is None or self.runs.get(key) is not state:
                return
            known = self._known_status(state, ftj)
            if known.get("phase") != "Running" or same_progress(known.get("progress"), progress):
                return
            await self._write(key, state, ftj, known, merge_patch.diff(known, {"progress": progress}, ("progress",)))

    async def _progress_loop(self, key: Key, pod: str) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_interval_seconds)
            try:
                await asyncio.wait_for(self.poll_progress_once(key, pod), self.settings.progress_interval_seconds * 4)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a failed read is retried on the next tick
                logger.warning("reading progress of %s/%s: %r", key[0], key[1], error)
                if self.metrics is not None:
                    self.metrics.reconcile_errors.inc()

    def _start_progress(self, key: Key, state: RunState, pod: str) -> None:
        current = state.progress
        if current is not None and current.pod == pod and not current.task.done():
            return
        state.stop_progress()
        state.progress = ProgressReader(pod, asyncio.create_task(self._progress_loop(key, pod), name=f"progress {key}"))

    # -- bookkeeping ------------------------------------------------------------------------

    def _state(self, key: Key, uid: str) -> RunState:
        state = self.runs.get(key)
        if state is None or state.uid != uid:
            if state is not None:  # a namesake: the FineTuneJob was deleted and created again
                self._forget(key)
            state = self.runs[key] = RunState(uid)
        return state

    def _set_phase(self, state: RunState, phase: str | None) -> None:
        old, state.phase = state.phase, phase
        if self.metrics is not None:
            self.metrics.phase_changed(old, phase)

    def _forget(self, key: Key) -> None:
        state = self.runs.pop(key, None)
        if state is not None:
            state.close()
            self._set_phase(state, None)

    def _failed(self, key: Key, state: RunState, error: Exception) -> None:
        if self.metrics is not None:
            self.metrics.reconcile_errors.inc()
        delay = self._schedule_retry(key, state)
        logger.warning("reconciling %s/%s failed (retry in %.1fs): %s", key[0], key[1], delay, error)

    def _schedule_retry(self, key: Key, state: RunState) -> float:
        state.failures += 1
        delay = min(MAX_RETRY_DELAY, 0.5 * 2 ** (state.failures - 1))
        if state.retry is not None:
            state.retry.cancel()
        loop = asyncio.get_running_loop()
        state.retry = loop.call_later(delay, lambda: asyncio.ensure_future(self._retry(key, state)))
        return delay

    def _settling(self, state: RunState, job: JobView | None, pods: list[PodView]) -> bool:
        """At a due write: whether to wait a little more because the Job has not caught up
        with its pod yet (bounded by MAX_SETTLE from the first postponed change)."""
        if job is None or not job.behind(pods):
            state.unsettled_since = None
            return False
        if state.unsettled_since is None:
            state.unsettled_since = self.clock()
        return (self.clock() - state.unsettled_since).total_seconds() < MAX_SETTLE

    def _schedule_flush(self, key: Key, state: RunState) -> None:
        if state.flush is not None:
            return  # one write is due already; it will see this change too
        loop = asyncio.get_running_loop()
        state.flush = loop.call_later(self.status_delay, lambda: asyncio.ensure_future(self._flush(key, state)))

    async def _flush(self, key: Key, state: RunState) -> None:
        state.flush = None
        if self.runs.get(key) is state:
            await self.reconcile(key, flush=True)

    async def _retry(self, key: Key, state: RunState) -> None:
        state.retry = None
        if self.runs.get(key) is state:
            await self.reconcile(key)
