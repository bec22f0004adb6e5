"""The chart's RBAC: exactly kubetune_operator.permissions, covering every API call.

Three checks per watch mode:

* contract: the rendered (Cluster)Roles hold exactly the rules of
  `kubetune_operator.permissions` (cluster, namespaced, peering);
* coverage: every call the operator's code makes is granted, derived from the code
  itself: the resources its Kopf handlers watch (list + watch), every request each
  `KubeApi` method sends (recorded by calling it with the HTTP layer replaced), Kopf's
  event posting, its observers, and Kopf's peering when on;
* nothing more: the grants equal those calls exactly (verb by verb), with Kopf's own
  observers (CRDs always; namespaces only when serving a list of namespaces) and peering.

tests/operator/test_operator_integration.py checks the other direction at run time:
every request a running operator sent is granted.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterable
from typing import Any

import kopf
import pytest
from chartlib import NAMESPACE, VALUE_SETS, kinds, render
from kopf._cogs.structs import references  # Kopf's own names for what it watches and posts

import kubetune_operator  # noqa: F401  (registers the handlers)
from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.resource import API_GROUP, PLURAL
from kubetune_operator import permissions
from kubetune_operator.builders import Owner, build_headless_service, build_job, build_network_policy
from kubetune_operator.kube import HttpKubeApi, KubeApi
from kubetune_operator.settings import OperatorSettings

Rule = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?P<namespaced>/namespaces/[^/]+)?/(?P<resource>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?P<sub>/[^/]+)?)?$"
)


def _rule_for(method: str, path: str) -> tuple[Rule, bool]:
    """The call's RBAC rule, and whether it is about namespaced objects."""
    match = PATH.match(path)
    assert match, f"unexpected API path {path}"
    resource = match["resource"] + (match["sub"] or "")
    verb = VERBS.get(method) or ("get" if match["name"] else "list")
    return (match["group"] or "", resource, verb), bool(match["namespaced"])


def _fake_argument(parameter: inspect.Parameter) -> Any:
    annotation = str(parameter.annotation)
    if "dict" in annotation:
        return {"metadata": {"name": "x"}}
    if "int" in annotation:
        return 1
    return "x"


def _api_calls(namespaced: bool = True) -> set[Rule]:
    """Every request each KubeApi method sends about namespaced (or cluster-scoped)
    objects, as RBAC (group, resource, verb)."""
    calls: list[tuple[str, str]] = []

    async def record(_session: Any, method: str, path: str, *_: Any) -> tuple[int, bytes]:
        calls.append((method, path))
        return 200, b"{}"

    async def call_all() -> None:
        api = HttpKubeApi(login=lambda: kopf.ConnectionInfo(server="https://kubernetes.invalid"))
        api._send = record  # type: ignore[method-assign]
        methods = [n for n, _ in inspect.getmembers(KubeApi, inspect.iscoroutinefunction) if not n.startswith("_")]
        assert methods, "KubeApi declares no calls"
        try:
            for name in methods:
                method = getattr(api, name)
                before = len(calls)
                arguments = {p.name: _fake_argument(p) for p in inspect.signature(method).parameters.values()}
                await method(**arguments)
                assert len(calls) > before, f"KubeApi.{name} sent no request"
        finally:
            await api.close()

    asyncio.run(call_all())
    rules = [_rule_for(method, path) for method, path in calls]
    return {rule for rule, scoped in rules if scoped == namespaced}


def _blocking_owner_references() -> list[dict[str, Any]]:
    """The blockOwnerDeletion ownerReferences of the objects a distributed run creates."""
    owner = Owner(name="x", namespace="ns", uid="u")
    spec = FineTuneJobSpec.model_validate(
        {"base": {"model": "m"}, "data": {"train": "s3://b/t.csv"}, "output": {"uri": "s3://b/o"}, "nodes": 2}
    )
    built = [
        build_job(owner, spec, OperatorSettings()),
        build_headless_service(owner, spec),
        build_network_policy(owner, spec),
    ]
    return [ref for obj in built for ref in obj["metadata"]["ownerReferences"] if ref.get("blockOwnerDeletion")]


def _watched() -> set[Rule]:
    registry = kopf.get_default_registry() if hasattr(kopf, "get_default_registry") else None
    assert registry is not None
    rules: set[Rule] = set()
    for group in (registry._indexing, registry._watching, registry._spawning, registry._changing):
        for handler in group.get_all_handlers():
            selector = handler.selector
            resource = selector.plural or selector.any_name
            rules |= {(selector.group, resource, verb) for verb in ("list", "watch")}
    # Handlers that keep state on the object (on.create/update/delete, daemons, timers)
    # make Kopf patch it (finalizers, progress annotations).
    for group in (registry._spawning, registry._changing):
        for handler in group.get_all_handlers():
            rules.add((handler.selector.group, handler.selector.plural or handler.selector.any_name, "patch"))
    return rules


def _kopf_rule(selector: Any, verb: str) -> Rule:
    return (selector.group or "", selector.plural or selector.any_name, verb)


def required_namespaced(peering: bool, clusterwide: bool) -> set[Rule]:
    """What the operator sends about objects in a watched namespace, derived from the code."""
    rules = _watched() | _api_calls()
    # kopf.event() from the handlers: Kopf posts to its EVENTS resource (core v1).
    rules.add(_kopf_rule(references.EVENTS, "create"))
    # Admission, not a call: OwnerReferencesPermissionEnforcement lets a created object's
    # ownerReference set blockOwnerDeletion only if its creator may update the owner's
    # finalizers. The builders set it on every owned object.
    rules |= {(API_GROUP, f"{PLURAL}/finalizers", "update") for _ in _blocking_owner_references()}
    if peering and not clusterwide:
        rules |= {_kopf_rule(references.NAMESPACED_PEERINGS_K, verb) for verb in ("list", "watch", "patch")}
    return rules


def required_cluster(peering: bool, clusterwide: bool) -> set[Rule]:
    """What Kopf itself reads cluster-wide: its observers (see kopf/_core/reactor/observation.py)."""
    # The resource observer watches CRDs unless settings.scanning.disabled (we leave it on).
    rules = {_kopf_rule(references.CRDS, verb) for verb in ("list", "watch")}
    # The operator's own cluster-scoped reads (the nodes' GPU memory labels).
    rules |= _api_calls(namespaced=False)
    if not clusterwide:
        # The namespace observer lists and watches namespaces only when serving a list of them.
        rules |= {_kopf_rule(references.NAMESPACES, verb) for verb in ("list", "watch")}
    if peering and clusterwide:
        rules |= {_kopf_rule(references.CLUSTER_PEERINGS_K, verb) for verb in ("list", "watch", "patch")}
    return rules


def _expand(rules: Iterable[Any]) -> set[Rule]:
    out: set[Rule] = set()
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out |= {(group, resource, verb) for verb in rule["verbs"]}
    return out


def _peering_rule(resource: str) -> list[Any]:
    return [rule for rule in permissions.PEERING_RULES if rule["resources"] == [resource]]


def _rbac(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    [role] = kinds(objects, "ClusterRole")
    [binding] = kinds(objects, "ClusterRoleBinding")
    [sa] = kinds(objects, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    return role, sa


def test_derived_calls_are_sane() -> None:
    rules = required_namespaced(peering=False, clusterwide=True)
    assert ("kubetune.io", "finetunejobs", "watch") in rules
    assert ("kubetune.io", "finetunejobs/status", "patch") in rules
    assert ("batch", "jobs", "create") in rules
    assert ("", "services", "create") in rules  # a multi-node run's headless Service
    assert ("", "pods/log", "get") in rules
    assert ("", "events", "create") in rules
    assert ("networking.k8s.io", "networkpolicies", "create") in rules
    assert ("kueue.x-k8s.io", "workloads", "patch") in rules
    # Only Jobs are deleted (a run the operator failed); only finalizers are "updated"
    # (admission's rule for blockOwnerDeletion, not a request).
    assert {resource for _, resource, verb in rules if verb == "delete"} == {"jobs"}
    assert {resource for _, resource, verb in rules if verb == "update"} == {"finetunejobs/finalizers"}
    # Nothing reads a single FineTuneJob or pod (the Kopf indices hold them); a Job only after a 409.
    assert {resource for _, resource, verb in rules if verb == "get"} == {"pods/log", "jobs"}
    assert ("", "namespaces", "list") not in required_cluster(peering=False, clusterwide=True)
    assert ("", "nodes", "list") in required_cluster(peering=False, clusterwide=False)  # the memory estimate
    assert ("", "nodes", "list") not in rules
    assert ("", "namespaces", "watch") in required_cluster(peering=False, clusterwide=False)


@pytest.mark.parametrize("name", ["defaults", "ha-clusterwide"])
def test_clusterwide_rbac(name: str) -> None:
    values = VALUE_SETS[name]
    objects = render(values)
    assert kinds(objects, "Role") == [] and kinds(objects, "RoleBinding") == []
    role, _ = _rbac(objects)
    peering = bool(values.get("peering", {}).get("enabled"))
    granted = _expand(role["rules"])
    expected = [*permissions.CLUSTER_RULES, *permissions.NAMESPACED_RULES]
    if peering:
        expected += _peering_rule("clusterkopfpeerings")
    assert granted == _expand(expected), "the chart's ClusterRole differs from kubetune_operator.permissions"
    needed = required_cluster(peering, clusterwide=True) | required_namespaced(peering, clusterwide=True)
    assert needed - granted == set(), "calls the operator makes that the chart does not grant"
    assert granted - needed == set(), "grants for calls the operator never makes"


@pytest.mark.parametrize(
    ("name", "namespaces"),
    [("namespaced", ["team-a", "team-b"]), ("ha-namespaced", ["ml"]), ("namespaced-release-ns", [NAMESPACE])],
)
def test_namespaced_rbac(name: str, namespaces: list[str]) -> None:
    values = VALUE_SETS[name]
    objects = render(values)
    peering = bool(values.get("peering", {}).get("enabled"))
    cluster_role, _ = _rbac(objects)
    # Cluster-wide: only what Kopf's observers read; nothing on FineTuneJobs, Jobs or pods.
    cluster_granted = _expand(cluster_role["rules"])
    assert cluster_granted == _expand([*permissions.CLUSTER_RULES, *permissions.NAMESPACE_OBSERVER_RULES])
    assert cluster_granted == required_cluster(peering, clusterwide=False)
    roles, bindings = kinds(objects, "Role"), kinds(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    expected = [*permissions.NAMESPACED_RULES, *(_peering_rule("kopfpeerings") if peering else [])]
    needed = required_namespaced(peering, clusterwide=False)
    for role in roles:
        granted = _expand(role["rules"])
        assert granted == _expand(expected), "a Role differs from kubetune_operator.permissions"
        assert needed - granted == set(), "calls the operator makes that the Role does not grant"
        assert granted - needed == set(), "grants for calls the operator never makes"
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[0]["metadata"]["name"],
        }
        assert binding["subjects"][0]["namespace"] == NAMESPACE


def test_peering_rules_only_with_peering() -> None:
    for name in ("defaults", "namespaced"):
        for obj in render(VALUE_SETS[name]):
            if obj["kind"] in ("Role", "ClusterRole"):
                assert not any("kopf.dev" in r["apiGroups"] for r in obj["rules"])


def test_permissions_cover_all_peering_modes() -> None:
    resources = {resource for rule in permissions.PEERING_RULES for resource in rule["resources"]}
    assert resources == {"clusterkopfpeerings", "kopfpeerings"}


def test_no_rbac() -> None:
    objects = render({"rbac": {"create": False}})
    assert not any(o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding") for o in objects)
