"""spec.suspend for runs that Kueue manages.

Kueue owns `suspend` on the Jobs it manages (those with its queue label): it creates a
Workload per Job and admits it by unsuspending the Job. Writing `suspend` on such a Job
would fight Kueue (the Job flips back and forth, creating and killing GPU pods). So a
queued FineTuneJob's `spec.suspend: true` deactivates its Workload instead
(`spec.active: false`): Kueue then evicts it, suspends the Job and keeps it out of the
queue; `spec.suspend: false` activates it again, and Kueue requeues and admits it as usual.
"""

from __future__ import annotations

from kubetune_operator.kube import KubeApi
from kubetune_operator.views import JobView


class WorkloadPending(RuntimeError):
    """Kueue has not created the Job's Workload yet: set its activation later."""


async def set_workload_active(api: KubeApi, namespace: str, job: JobView, active: bool) -> None:
    """Make the Workloads of `job` active or not (a patch only where they differ)."""
    if job.uid is None:
        raise WorkloadPending(f"Job {namespace}/{job.name} has no uid yet")
    workloads = await api.list_workloads(namespace, job.uid)
    if not workloads:
        if active:
            return  # none to activate: nothing was ever deactivated
        raise WorkloadPending(f"Kueue has not created the Workload of Job {namespace}/{job.name} yet")
    for workload in workloads:
        if bool((workload.get("spec") or {}).get("active", True)) != active:
            await api.patch_workload(namespace, workload["metadata"]["name"], {"spec": {"active": active}})
