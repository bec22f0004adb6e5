"""Creating a run's objects, and what the API server's answer means for the status.

* created: the Job (after a distributed run's headless Service and NetworkPolicy);
* 409 on the Job: it is read back. Ours (its ownerReference has our uid): adopted. One
  of a deleted FineTuneJob of the same name: garbage collection is on its way, try again
  soon (`RetryableError`). Anyone else's: `NameConflict`, left untouched;
* refused (any other 4xx): `JobCreateFailed` with the API server's message. 400 and 422
  mean the Job is invalid, and the spec that made it cannot change: the run fails. 403 and
  the rest (quota, a webhook, RBAC) may pass once someone acts: the run is stalled and
  creation is tried again with backoff;
* 429, 5xx, timeouts and connection errors: raised, retried with backoff, nothing shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.outcomes import Reason
from kubetune_api.resource import KIND
from kubetune_operator.builders import build_headless_service, build_job, build_network_policy, distributed
from kubetune_operator.kube import ApiError, KubeApi
from kubetune_operator.pod_template import Owner
from kubetune_operator.settings import OperatorSettings
from kubetune_operator.status import CreateProblem
from kubetune_operator.views import JobView

INVALID = frozenset({400, 422})


class RetryableError(RuntimeError):
    """Not done yet for a reason that passes by itself; reconcile again later."""


@dataclass(frozen=True)
class Creation:
    """What creating the run's Job came to."""

    job: dict[str, Any] | None = None  # the Job now (the manifest we sent, or the one found)
    created: bool = False  # by this call
    problem: CreateProblem | None = None


async def create_run(api: KubeApi, owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> Creation:
    """Create the run's objects; see the module docstring for the answers."""
    manifest = build_job(owner, spec, settings)
    name = manifest["metadata"]["name"]
    try:
        if spec.nodes > 1:
            # Before the Job, so the pods' DNS names exist when they start. Its name carries
            # the FineTuneJob's uid: 409 means it is ours, from an earlier try.
            await api.create_service(owner.namespace, build_headless_service(owner, spec))
        if distributed(spec):
            await api.create_network_policy(owner.namespace, build_network_policy(owner, spec))
        if await api.create_job(owner.namespace, manifest):
            return Creation(job=manifest, created=True)
    except ApiError as error:
        if error.retryable:
            raise
        what = "Job" if name in str(error) else "run's objects"
        message = f"the API server refused to create the {what} {name}: HTTP {error.status}: {error.detail}"
        return Creation(problem=CreateProblem(Reason.JOB_CREATE_FAILED, message, final=error.status in INVALID))
    return await _existing(api, owner, name)


async def _existing(api: KubeApi, owner: Owner, name: str) -> Creation:
    """After a 409: whose Job holds the name?"""
    found = await api.get_job(owner.namespace, name)
    if found is None:
        raise RetryableError(f"Job {owner.namespace}/{name} was deleted while being created; trying again")
    job = JobView(found)
    if job.owned_by(owner.uid):
        return Creation(job=found)
    references = found.get("metadata", {}).get("ownerReferences") or []
    if any(ref.get("kind") == KIND for ref in references):
        # A Job left by a deleted FineTuneJob of the same name: wait for its garbage collection.
        raise RetryableError(f"Job {owner.namespace}/{name} still belongs to a deleted {KIND} of the same name")
    message = (
        f"a Job named {name} that this {KIND} does not own exists in namespace {owner.namespace}; "
        f"it is left untouched: delete or rename it, or re-create this {KIND} under another name"
    )
    return Creation(problem=CreateProblem(Reason.NAME_CONFLICT, message))
