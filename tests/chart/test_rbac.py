"""The chart's RBAC: exactly kubetune_operator.permissions, covering every API call.

Three checks per watch mode:

* contract: the rendered (Cluster)Roles hold exactly the rules of
  `kubetune_operator.permissions` (cluster, namespaced, peering);
* coverage: every call the operator's code makes is granted, derived from the code
  itself: the resources its Kopf handlers watch (list + watch), every request each
  `KubeApi` method sends (recorded by calling it with the HTTP layer replaced), Kopf's
  event posting, and Kopf's peering when on;
* nothing more: no grant gives a capability (read, create, modify, delete) on a resource
  that those calls and Kopf's own observer do not need.
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

import kubetune_operator  # noqa: F401  (registers the handlers)
from kubetune_operator import permissions
from kubetune_operator.kube import HttpKubeApi, KubeApi

Rule = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/[^/]+/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?P<sub>/[^/]+)?)?$"
)


def _rule_for(method: str, path: str) -> Rule:
    match = PATH.match(path)
    assert match, f"unexpected API path {path}"
    resource = match["resource"] + (match["sub"] or "")
    verb = VERBS.get(method) or ("get" if match["name"] else "list")
    return (match["group"] or "", resource, verb)


def _fake_argument(parameter: inspect.Parameter) -> Any:
    annotation = str(parameter.annotation)
    if "dict" in annotation:
        return {"metadata": {"name": "x"}}
    if "int" in annotation:
        return 1
    return "x"


def _api_calls() -> set[Rule]:
    """Every request each KubeApi method sends, as RBAC (group, resource, verb)."""
    calls: list[tuple[str, str]] = []

    async def record(method: str, path: str, *_: Any) -> tuple[int, bytes]:
        calls.append((method, path))
        return 200, b"{}"

    api = HttpKubeApi()
    api._send = record  # type: ignore[method-assign]
    methods = [name for name, _ in inspect.getmembers(KubeApi, inspect.iscoroutinefunction) if not name.startswith("_")]
    assert methods, "KubeApi declares no calls"
    for name in methods:
        method = getattr(api, name)
        before = len(calls)
        arguments = {p.name: _fake_argument(p) for p in inspect.signature(method).parameters.values()}
        asyncio.run(method(**arguments))
        assert len(calls) > before, f"KubeApi.{name} sent no request"
    return {_rule_for(method, path) for method, path in calls}


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


def required_rules(peering: bool, clusterwide: bool) -> set[Rule]:
    rules = _watched() | _api_calls()
    rules.add(("", "events", "create"))  # kopf.event() from the handlers
    if peering:
        resource = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
        rules |= {("kopf.dev", resource, verb) for verb in ("get", "list", "watch", "patch")}
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


CAPABILITY = {
    "get": "read",
    "list": "read",
    "watch": "read",
    "create": "create",
    "patch": "modify",
    "update": "modify",
    "delete": "delete",
    "deletecollection": "delete",
}
# The same resource under two API groups.
SAME_RESOURCE = {("events.k8s.io", "events"): ("", "events")}
# What Kopf itself reads to find resources and namespaces (its observer), in any mode.
KOPF_OBSERVER = {("apiextensions.k8s.io", "customresourcedefinitions", "read"), ("", "namespaces", "read")}


def _capabilities(rules: set[Rule]) -> set[tuple[str, str, str]]:
    out = set()
    for group, resource, verb in rules:
        group, resource = SAME_RESOURCE.get((group, resource), (group, resource))
        capability = CAPABILITY[verb]
        if capability == "read" and resource.endswith("/status"):
            resource = resource.removesuffix("/status")  # reading status reads the object
        out.add((group, resource, capability))
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
    rules = required_rules(peering=False, clusterwide=True)
    assert ("kubetune.io", "finetunejobs", "watch") in rules
    assert ("kubetune.io", "finetunejobs/status", "patch") in rules
    assert ("batch", "jobs", "create") in rules
    assert ("", "pods/log", "get") in rules
    assert not any(verb == "delete" for _, _, verb in rules)


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
    needed = required_rules(peering=peering, clusterwide=True)
    assert needed - granted == set(), "calls the operator makes that the chart does not grant"
    assert _capabilities(granted) - _capabilities(needed) - KOPF_OBSERVER == set(), "grants beyond the calls made"


@pytest.mark.parametrize(
    ("name", "namespaces"),
    [("namespaced", ["team-a", "team-b"]), ("ha-namespaced", ["ml"]), ("namespaced-release-ns", [NAMESPACE])],
)
def test_namespaced_rbac(name: str, namespaces: list[str]) -> None:
    values = VALUE_SETS[name]
    objects = render(values)
    peering = bool(values.get("peering", {}).get("enabled"))
    cluster_role, _ = _rbac(objects)
    # Cluster-wide: only what Kopf's observer reads; nothing on FineTuneJobs, Jobs or pods.
    assert _expand(cluster_role["rules"]) == _expand(permissions.CLUSTER_RULES)
    assert _capabilities(_expand(cluster_role["rules"])) <= KOPF_OBSERVER
    roles, bindings = kinds(objects, "Role"), kinds(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    expected = [*permissions.NAMESPACED_RULES, *(_peering_rule("kopfpeerings") if peering else [])]
    needed = required_rules(peering=peering, clusterwide=False)
    for role in roles:
        granted = _expand(role["rules"])
        assert granted == _expand(expected), "a Role differs from kubetune_operator.permissions"
        assert needed - granted == set(), "calls the operator makes that the Role does not grant"
        assert _capabilities(granted) - _capabilities(needed) == set(), "grants beyond the calls made"
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
