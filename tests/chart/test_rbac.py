"""The chart's RBAC grants exactly the API calls the operator (and Kopf for it) makes.

The required rules are derived from the operator's code, not written down a second
time: the resources its Kopf handlers watch (list + watch), every request each
`KubeApi` method sends (recorded by calling it with the HTTP layer replaced), Kopf's
event posting, and Kopf's peering resources when peering is on.
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
from kubetune_operator.kube import KubeApi, KubernetesClientApi

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

    async def record(method: str, path: str, **_: Any) -> tuple[int, bytes]:
        calls.append((method, path))
        return 200, b"{}"

    api = object.__new__(KubernetesClientApi)
    api._run = record  # type: ignore[method-assign]
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


def _expand(rules: Iterable[dict[str, Any]]) -> set[Rule]:
    out: set[Rule] = set()
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out |= {(group, resource, verb) for verb in rule["verbs"]}
    return out


def test_derived_rules_are_sane() -> None:
    rules = required_rules(peering=False, clusterwide=True)
    assert ("kubetune.io", "finetunejobs", "watch") in rules
    assert ("kubetune.io", "finetunejobs/status", "patch") in rules
    assert ("batch", "jobs", "create") in rules
    assert ("", "pods/log", "get") in rules
    assert not any(verb == "delete" for _, _, verb in rules)


@pytest.mark.parametrize("name", ["defaults", "ha-clusterwide"])
def test_clusterwide_rules_are_exactly_the_required_ones(name: str) -> None:
    values = VALUE_SETS[name]
    objects = render(values)
    assert kinds(objects, "Role") == [] and kinds(objects, "RoleBinding") == []
    [role] = kinds(objects, "ClusterRole")
    [binding] = kinds(objects, "ClusterRoleBinding")
    peering = bool(values.get("peering", {}).get("enabled"))
    assert _expand(role["rules"]) == required_rules(peering=peering, clusterwide=True)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    [sa] = kinds(objects, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]


@pytest.mark.parametrize(
    ("name", "namespaces"),
    [("namespaced", ["team-a", "team-b"]), ("ha-namespaced", ["ml"]), ("namespaced-release-ns", [NAMESPACE])],
)
def test_namespaced_mode_has_no_cluster_permissions(name: str, namespaces: list[str]) -> None:
    values = VALUE_SETS[name]
    objects = render(values)
    assert kinds(objects, "ClusterRole") == [] and kinds(objects, "ClusterRoleBinding") == []
    roles = kinds(objects, "Role")
    bindings = kinds(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    peering = bool(values.get("peering", {}).get("enabled"))
    for role in roles:
        assert _expand(role["rules"]) == required_rules(peering=peering, clusterwide=False)
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == NAMESPACE


def test_peering_rules_only_with_peering() -> None:
    for name in ("defaults", "namespaced"):
        for obj in render(VALUE_SETS[name]):
            if obj["kind"] in ("Role", "ClusterRole"):
                assert not any("kopf.dev" in r["apiGroups"] for r in obj["rules"])


def test_no_rbac() -> None:
    objects = render({"rbac": {"create": False}})
    assert not any(o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding") for o in objects)
