"""What the operator remembers about one FineTuneJob between watch events.

One `RunState` per FineTuneJob, keyed by (namespace, name) and tied to its uid: a
FineTuneJob deleted and created again under the same name gets a fresh state, and a
forgotten one is dropped whole (`close` cancels its timers and its progress reader), so
nothing is left behind to leak or to confuse the next namesake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.validation import ClusterPolicy, InvalidSpecError, validate_spec
from kubetune_operator import merge_patch
from kubetune_operator.builders import spec_hash
from kubetune_operator.status import CreateProblem


@dataclass
class CheckedSpec:
    """The spec as validated (cached while the raw spec is equal: every watch event on the
    FineTuneJob, its Job or its pods reconciles, and validating plus hashing the spec was a
    tenth of the operator's CPU per event)."""

    raw: Mapping[str, Any]
    spec: FineTuneJobSpec | None
    invalid: str | None = None  # why the spec cannot run (then spec is None)
    hash: str | None = None


@dataclass
class StatusCache:
    """The status the server holds after our latest write, until the watch shows it.

    The index (the watch stream) lags behind our writes; deciding from it alone would write
    the same change twice. It is trusted again as soon as it shows an object version that
    is not one our writes replaced: then it also shows what others changed (an edit to a
    field we own is corrected from there).
    """

    status: dict[str, Any]
    resource_version: str | None
    superseded: set[str | None] = field(default_factory=set)

    def known(self, indexed_version: str | None, indexed: Mapping[str, Any]) -> dict[str, Any]:
        if indexed_version in self.superseded:
            return dict(self.status)
        return dict(indexed)

    def written(self, based_on: str | None, patch: Mapping[str, Any], new_version: str | None) -> None:
        self.superseded |= {based_on, self.resource_version}
        self.superseded.discard(new_version)
        self.status = merge_patch.apply(self.status, patch)
        self.resource_version = new_version


@dataclass
class ProgressReader:
    pod: str
    task: asyncio.Task[None]


@dataclass
class RunState:
    uid: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    checked: CheckedSpec | None = None
    created_job: dict[str, Any] | None = None  # the Job we created, until the index shows it
    cache: StatusCache | None = None
    announced: bool = False  # JobCreated posted, the first status not written yet
    unsettled_since: datetime | None = None  # a due write waits for the Job to catch up
    flush: asyncio.TimerHandle | None = None
    retry: asyncio.TimerHandle | None = None
    failures: int = 0  # consecutive failed reconciles (the retry backoff)
    progress: ProgressReader | None = None
    phase: str | None = None
    warned_generation: int | None = None  # SpecChangeIgnored Event posted for this generation
    create_problem: CreateProblem | None = None
    problem_announced: str | None = None  # the create problem's message we posted an Event for
    disrupted: set[str] = field(default_factory=set)  # uids of pods the cluster stopped
    workload_active: bool | None = None  # what we last set on the Kueue Workload
    job_deleted: bool = False  # the Job of a run failed by the operator was deleted
    memory_checked: bool = False  # the preflight memory estimate was made (once, before the Job)
    memory_warning: str | None = None  # its GPUMemoryTooSmall message

    @property
    def wrote_phase(self) -> str | None:
        """The phase of the status we last wrote (None: we wrote none)."""
        return self.cache.status.get("phase") if self.cache is not None else None

    def is_own_write(self, meta: Mapping[str, Any]) -> bool:
        """Whether the FineTuneJob is exactly the object our latest status write made (the
        version that write returned). Its watch event then holds nothing new: the reconcile
        that wrote saw everything else, and the Job's and pods' changes since come with
        watch events of their own. A third of a run's watch events are these echoes; anyone
        else's change (a spec or status edit, a deletion) makes a version of its own."""
        written = self.cache.resource_version if self.cache is not None else None
        return bool(written) and meta.get("resourceVersion") == written and meta.get("uid") == self.uid

    def checked_spec(self, raw_spec: Mapping[str, Any], key: tuple[str, str], policy: ClusterPolicy) -> CheckedSpec:
        """The spec through the one validation path, cached while the raw spec is equal."""
        if self.checked is not None and self.checked.raw == raw_spec:
            return self.checked
        try:
            spec = validate_spec(dict(raw_spec), namespace=key[0], name=key[1], policy=policy)
            self.checked = CheckedSpec(raw_spec, spec, hash=spec_hash(spec))
        except InvalidSpecError as error:
            self.checked = CheckedSpec(raw_spec, None, str(error))
        return self.checked

    def stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.task.cancel()
            self.progress = None

    def close(self) -> None:
        """Cancel everything this state started; it is not used again."""
        for handle in (self.flush, self.retry):
            if handle is not None:
                handle.cancel()
        self.flush = self.retry = None
        self.stop_progress()
