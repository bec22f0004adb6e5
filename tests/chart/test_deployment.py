"""The operator Deployment: the kopf command line, the settings env, probes, security."""

from __future__ import annotations

from typing import Any

import pytest
from chartlib import NAMESPACE, VALUE_SETS, container, env_of, one, render

from kubetune_operator.settings import OperatorSettings

LIVENESS = "--liveness=http://0.0.0.0:8081/healthz"


def _argv(values: dict[str, Any] | None = None) -> list[str]:
    c = container(render(values))
    return [*c["command"], *c["args"]]


def test_default_command_is_standalone_clusterwide_kopf_with_liveness() -> None:
    argv = _argv()
    assert argv[:4] == ["kopf", "run", "-m", "kubetune_operator"]
    assert LIVENESS in argv
    assert "--standalone" in argv
    assert "--all-namespaces" in argv
    assert not any(a.startswith(("--peering", "--namespace")) for a in argv)


def test_namespaced_mode_flags_match_the_operator_settings() -> None:
    values = VALUE_SETS["namespaced"]
    c = container(render(values))
    settings = OperatorSettings.from_env(env_of(c))
    assert settings.namespaces == ("team-a", "team-b")
    args = c["args"]
    assert "--all-namespaces" not in args
    # The kopf flags are exactly those the operator derives from KUBETUNE_NAMESPACES.
    flags = args[args.index("--namespace") : args.index("--namespace") + 4]
    assert flags == settings.kopf_namespace_args()


def test_namespaced_mode_defaults_to_the_release_namespace() -> None:
    c = container(render(VALUE_SETS["namespaced-release-ns"]))
    assert OperatorSettings.from_env(env_of(c)).namespaces == (NAMESPACE,)
    assert c["args"][c["args"].index("--namespace") :][:2] == ["--namespace", NAMESPACE]


def test_peering_mode() -> None:
    objects = render(VALUE_SETS["ha-namespaced"])
    deployment = one(objects, "Deployment")
    c = container(objects)
    assert deployment["spec"]["replicas"] == 2
    assert "--peering=ml-peering" in c["args"] and "--standalone" not in c["args"]
    # Each replica draws its own Kopf priority (equal priorities pause all replicas).
    assert c["command"][:2] == ["/bin/sh", "-c"]
    assert 'exec kopf "$@" --priority=' in c["command"][2]
    assert c["command"][3] == "kopf" and c["args"][0] == "run"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_standalone_never_runs_two_operators() -> None:
    assert one(render(), "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_env_is_accepted_by_the_operator_settings(name: str) -> None:
    c = container(render(VALUE_SETS[name]))
    settings = OperatorSettings.from_env(env_of(c))
    assert settings.clusterwide == ("--all-namespaces" in c["args"])
    assert str(settings.metrics_port) in [str(p["containerPort"]) for p in c["ports"]]


def test_values_reach_the_settings() -> None:
    c = container(render(VALUE_SETS["everything"]))
    settings = OperatorSettings.from_env(env_of(c))
    assert settings.trainer_image == "registry.example.com/kubetune/trainer:0.1.0-cu128"
    assert settings.gpu_resource == "amd.com/gpu"
    assert settings.gpu_toleration_key == ""
    assert settings.max_gpus_per_node == 4
    assert settings.progress_interval_seconds == 10
    assert settings.default_output == "pvc://models/runs"
    assert settings.metrics_port == 9090
    assert c["image"] == "registry.example.com/kubetune/operator@sha256:" + "a" * 64
    assert "--liveness=http://0.0.0.0:9091/healthz" in c["args"]
    assert "--log-format=json" in c["args"] and "--debug" in c["args"]
    assert c["args"][-1] == "--log-refkey=kubetune"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c["env"]


def test_default_images_follow_the_app_version() -> None:
    c = container(render())
    settings = OperatorSettings.from_env(env_of(c))
    # The chart's default trainer image is the one the operator itself defaults to.
    assert settings.trainer_image == OperatorSettings().trainer_image
    assert c["image"].endswith(":" + settings.trainer_image.rsplit(":", 1)[1])


def test_probes_use_kopf_liveness_endpoint() -> None:
    c = container(render())
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http-healthz"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http-metrics": 8080, "http-healthz": 8081}
    assert "readinessProbe" not in container(render(VALUE_SETS["everything"]))


def test_restricted_pod_security() -> None:
    """The defaults meet the restricted Pod Security Standard."""
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert all("hostPath" not in v for v in pod["volumes"])
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_service_account_and_labels() -> None:
    objects = render(VALUE_SETS["everything"])
    pod = one(objects, "Deployment")["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "kubetune-operator"
    assert one(objects, "ServiceAccount")["metadata"]["name"] == "kubetune-operator"
    assert pod["metadata"]["labels"]["team"] == "ml-platform"
    assert pod["metadata"]["annotations"] == {"example.com/a": "b"}
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    selector = one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
