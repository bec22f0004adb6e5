"""The RBAC the operator needs: every API call it (and Kopf, in the modes used) makes.

The Helm chart's ClusterRole/Role are checked against these lists by a test, so keep
them honest: a call added to `kubetune_operator.kube` or a new watched resource in
`kubetune_operator.handlers` needs its rule here, with the reason.

CLUSTER_RULES are needed cluster-wide whatever KUBETUNE_NAMESPACES says; NAMESPACED_RULES
go into a ClusterRole when the operator watches all namespaces, or into a Role in each
watched namespace otherwise. PEERING_RULES are only needed when Kopf peering is used
(not with `--standalone`).
"""

from __future__ import annotations

from typing import TypedDict

from kubetune_operator.spec import API_GROUP, PLURAL


class Rule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


CLUSTER_RULES: list[Rule] = [
    # Kopf's observer watches CRDs to notice our resource (re)appearing; without it Kopf
    # logs a warning and only rediscovers resources on restart.
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    # Kopf's observer lists/watches namespaces when serving a namespace list or pattern.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]

NAMESPACED_RULES: list[Rule] = [
    # handlers.finetunejobs index + finetunejob_event: list & watch every FineTuneJob.
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
    # kube.patch_finetunejob_status: status is the only thing the operator writes on them.
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
    # handlers.trainer_jobs + kube.create_job / kube.patch_job (suspend).
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "patch"]},
    # handlers.trainer_pods: the pod's phase, scheduling and container states.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    # kube.read_pod_log: progress lines from the trainer's log tail.
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    # kopf.event (handlers.post_event): one Event per status transition.
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]

PEERING_RULES: list[Rule] = [
    # Kopf peering (several operator replicas, one active): cluster-scoped peering object
    # when serving all namespaces, namespaced ones otherwise.
    {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch", "patch", "get"]},
    {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["list", "watch", "patch", "get"]},
]

REQUIRED_RULES: dict[str, list[Rule]] = {
    "cluster": CLUSTER_RULES,
    "namespaced": NAMESPACED_RULES,
    "peering": PEERING_RULES,
}
