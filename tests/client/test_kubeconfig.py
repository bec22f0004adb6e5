"""The cluster is found as kubectl finds it: KUBECONFIG (merged lists), --kubeconfig,
contexts and their namespaces, the pod's service account, and clear errors otherwise."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_api.kubeconfig import KubeConfigError, connect


def kubeconfig(path: Path, contexts: dict[str, dict[str, Any]], current: str) -> Path:
    """A kube config with one cluster and one token user per context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": c["server"]}} for name, c in contexts.items()],
        "users": [{"name": name, "user": {"token": c.get("token", f"token-{name}")}} for name, c in contexts.items()],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": name, **({"namespace": c["ns"]} if "ns" in c else {})},
            }
            for name, c in contexts.items()
        ],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def no_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config of the machine running the tests


def test_current_context_and_its_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = kubeconfig(tmp_path / "config", {"dev": {"server": "http://dev:8080/", "ns": "team-a"}}, "dev")
    monkeypatch.setenv("KUBECONFIG", str(path))
    connection = connect()
    assert (connection.server, connection.namespace, connection.context) == ("http://dev:8080", "team-a", "dev")
    assert connection.authorization() == "Bearer token-dev"
    assert connect(namespace="other").namespace == "other"  # -n wins


def test_a_kubeconfig_list_is_merged_and_context_picks_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "a", {"dev": {"server": "http://dev", "ns": "team-a"}}, "dev")
    second = kubeconfig(tmp_path / "b", {"prod": {"server": "http://prod"}}, "prod")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    assert connect().context == "dev"  # the first file's current-context
    prod = connect(context="prod")
    assert (prod.server, prod.namespace) == ("http://prod", "default")
    assert prod.authorization() == "Bearer token-prod"


def test_the_kubeconfig_flag_wins_over_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = kubeconfig(tmp_path / "env", {"env": {"server": "http://env"}}, "env")
    flag = kubeconfig(tmp_path / "flag", {"flag": {"server": "http://flag"}}, "flag")
    monkeypatch.setenv("KUBECONFIG", str(env))
    assert connect(kubeconfig=str(flag)).server == "http://flag"


def test_home_kube_config_when_no_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    kubeconfig(tmp_path / "home" / ".kube" / "config", {"home": {"server": "http://home"}}, "home")
    assert connect().server == "http://home"


def test_an_unknown_context_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "c", {"dev": {"server": "http://dev"}}, "dev")))
    with pytest.raises(KubeConfigError, match="staging"):
        connect(context="staging")


def test_no_config_and_no_pod_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(KubeConfigError, match=r"no kube config found \(looked at ~/.kube/config; KUBECONFIG is not"):
        connect()


def test_in_a_pod_the_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.config import incluster_config

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "namespace").write_text("ml\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setattr("kubetune_api.kubeconfig.SERVICE_ACCOUNT_NAMESPACE", tmp_path / "namespace")
    connection = connect()
    assert (connection.server, connection.namespace, connection.context) == ("https://10.0.0.1:443", "ml", None)
    assert connection.authorization() == "bearer sa-token"
    assert connection.ca_file == str(tmp_path / "ca.crt")
    monkeypatch.setenv("POD_NAMESPACE", "from-env")
    assert connect().namespace == "from-env"
    with pytest.raises(KubeConfigError, match="--context dev: no kube config file"):
        connect(context="dev")


def test_without_the_kubernetes_package_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(KubeConfigError, match=r"pip install 'kubetune\[client\]'"):
        connect()
