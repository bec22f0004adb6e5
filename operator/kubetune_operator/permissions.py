"""The RBAC the operator needs: every API call it (and Kopf, in the modes used) makes.

The Helm chart's ClusterRole/Role are checked against these lists by a test, so keep
them honest: a call added to `kubetune_operator.kube` or a new watched resource in
`kubetune_operator.handlers` needs its rule here, with the reason.

CLUSTER_RULES are needed cluster-wide whatever KUBETUNE_NAMESPACES says;
NAMESPACE_OBSERVER_RULES cluster-wide only when serving a list of namespaces.
NAMESPACED_RULES go into a ClusterRole when the operator watches all namespaces, or into
a Role in each watched namespace otherwise. PEERING_RULES are only needed when Kopf
peering is used (not with `--standalone`). Every verb is one the operator or Kopf (1.45)
really sends: tests/chart/test_rbac.py derives the calls and compares them exactly, and
tests/operator/test_operator_integration.py checks every request a running operator made.
"""

from __future__ import annotations

from typing import TypedDict

from kubetune_api.resource import API_GROUP, PLURAL


class Rule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


CLUSTER_RULES: list[Rule] = [
    # Kopf's resource observer watches CRDs to notice our resource (re)appearing, in every
    # mode; without it Kopf logs a warning and only rediscovers resources on restart.
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    # kube.list_nodes: the nvidia.com/gpu.memory label of the nodes a run may land on, for the
    # preflight memory estimate (memory_check). Read only; without it the estimate falls
    # back to KUBETUNE_GPU_MEMORY.
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
]

NAMESPACE_OBSERVER_RULES: list[Rule] = [
    # Kopf's namespace observer lists and watches namespaces only when it serves a list of
    # namespaces (`--namespace`), to start and stop their watch streams as they come and
    # go; cluster-wide (`-A`) it watches the resources across all namespaces instead.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]

NAMESPACED_RULES: list[Rule] = [
    # handlers.finetunejobs index + finetunejob_event: Kopf lists, then watches. Nothing
    # reads a single FineTuneJob (the index holds them), so no `get`.
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["list", "watch"]},
    # kube.patch_finetunejob_status: status is the only thing the operator writes on them,
    # always as a merge patch (no `update`, no read-modify-write).
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
    # Not a call: the OwnerReferencesPermissionEnforcement admission plugin (on by default
    # in OpenShift) lets an ownerReference with blockOwnerDeletion (on every Job, Service
    # and NetworkPolicy the operator creates) point only at an owner whose finalizers the
    # creator may update.
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    # handlers.trainer_jobs + kube.create_job / kube.patch_job (suspend); kube.get_job after
    # a 409 (whose Job holds the name?); kube.delete_job for a run failed by the operator
    # (TooManyDisruptions: its Job would retry for free forever).
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch", "get", "create", "patch", "delete"]},
    # kube.create_service: a multi-node run's headless Service (pod DNS names for the
    # rendezvous). Created once, never read, changed or deleted (garbage collection does).
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create"]},
    # kube.create_network_policy: a distributed run's NetworkPolicy (only its own pods may
    # reach its rendezvous and NCCL ports). Created once; garbage collection removes it.
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create"]},
    # kube.list_workloads / kube.patch_workload: spec.suspend of a Kueue-managed run
    # deactivates its Workload (Kueue owns the Job's suspend). Harmless without Kueue.
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list", "patch"]},
    # handlers.trainer_pods: the pod's phase, scheduling and container states.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    # kube.read_pod_log: progress lines from the trainer's log tail.
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    # kopf.event (handlers.post_event): one Event per status transition. Kopf posts core
    # v1 Events (its references.EVENTS), never events.k8s.io ones.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]

PEERING_RULES: list[Rule] = [
    # Kopf peering (several operator replicas, one active): cluster-scoped peering object
    # when serving all namespaces, namespaced ones otherwise. Kopf watches them and patches
    # its own entry in; it never reads one by name.
    {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["list", "watch", "patch"]},
]

REQUIRED_RULES: dict[str, list[Rule]] = {
    "cluster": CLUSTER_RULES,
    "namespace-observer": NAMESPACE_OBSERVER_RULES,
    "namespaced": NAMESPACED_RULES,
    "peering": PEERING_RULES,
}
