"""Finding the cluster the way kubectl does: kube config files, their current context and its
namespace, else the pod's service account.

The `kubernetes` package's loader reads the files (merged KUBECONFIG lists, client
certificates, exec plugins, OIDC and expiring tokens), so the client authenticates exactly
as kubectl and the operator do; it is imported only here, when a client connects, so the
contract stays importable without it (`pip install 'kubetune[client]'`).

Order, as kubectl: `kubeconfig=` (the --kubeconfig flag), else $KUBECONFIG (a list of
files, merged), else ~/.kube/config; when none of those files exists and the process runs
in a pod, the pod's service account. The namespace: `namespace=` (-n), else the context's,
else (in a pod) $POD_NAMESPACE or the service account's, else "default".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "default"
INSTALL_HINT = "pip install 'kubetune[client]'"


class KubeConfigError(RuntimeError):
    """No cluster to talk to: no kube config, an unknown context, or the loader is missing."""


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate to it."""

    server: str  # https://HOST:PORT, no trailing slash
    namespace: str
    context: str | None  # None: the pod's service account
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    tls_server_name: str | None = None
    proxy: str | None = None
    # The Authorization header value, asked for on every request: exec plugins and
    # service-account tokens expire, and the loader's hook refreshes them.
    authorization: Callable[[], str | None] = field(default=lambda: None, repr=False)
    # The kubernetes.client.Configuration it came from, for the pods/exec websocket.
    configuration: Any = field(default=None, repr=False, compare=False)


def kubeconfig_files(kubeconfig: str | None = None) -> list[str]:
    """The kube config files kubectl would read, those that exist."""
    listed = kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    paths = [os.path.expanduser(part) for part in listed.split(os.pathsep) if part]
    return [path for path in paths if os.path.isfile(path)]


def connect(context: str | None = None, namespace: str | None = None, kubeconfig: str | None = None) -> Connection:
    """The connection kubectl would use with --context, -n and --kubeconfig."""
    try:
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config
    except ImportError:
        raise KubeConfigError(f"the kubetune client needs the kubernetes package: {INSTALL_HINT}") from None

    configuration = k8s_client.Configuration()
    files = kubeconfig_files(kubeconfig)
    if files:
        joined = os.pathsep.join(files)
        context = context or first_current_context(files)
        try:
            k8s_config.load_kube_config(
                config_file=joined, context=context, client_configuration=configuration, persist_config=False
            )
            contexts, current = k8s_config.list_kube_config_contexts(config_file=joined)
        except k8s_config.ConfigException as error:
            raise KubeConfigError(f"kube config {joined}: {error}") from None
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
        context_namespace = ((chosen or {}).get("context") or {}).get("namespace")
        name = (chosen or {}).get("name") or context
        return _connection(configuration, namespace or context_namespace or DEFAULT_NAMESPACE, name)

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        if context:
            raise KubeConfigError(f"--context {context}: no kube config file found ({_looked_at(kubeconfig)})")
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException as error:
            raise KubeConfigError(f"in-cluster service account: {error}") from None
        return _connection(configuration, namespace or _pod_namespace(), None)

    raise KubeConfigError(
        f"no kube config found ({_looked_at(kubeconfig)}) and not running in a pod: "
        "set KUBECONFIG, pass --kubeconfig, or run `kubectl config view` to check your setup"
    )


def first_current_context(files: list[str]) -> str | None:
    """The current-context kubectl uses: the first file's that sets one. (The `kubernetes`
    package's merger takes the last file's.)"""
    for path in files:
        try:
            current = (yaml.safe_load(Path(path).read_text()) or {}).get("current-context")
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # the loader reports a broken file with its own message
        if current:
            return str(current)
    return None


def _looked_at(kubeconfig: str | None) -> str:
    if kubeconfig:
        return f"looked at --kubeconfig {kubeconfig}"
    if os.environ.get("KUBECONFIG"):
        return f"looked at KUBECONFIG={os.environ['KUBECONFIG']}"
    return f"looked at {DEFAULT_KUBECONFIG}; KUBECONFIG is not set"


def _pod_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def _connection(configuration: Any, namespace: str, context: str | None) -> Connection:
    def authorization() -> str | None:
        # auth_settings() runs the loader's refresh hook (exec plugins, expiring tokens) and
        # holds the header under the same key in every release of the kubernetes package.
        value = (configuration.auth_settings().get("BearerToken") or {}).get("value")
        return str(value) if value else None

    return Connection(
        server=str(configuration.host).rstrip("/"),
        namespace=namespace,
        context=context,
        ca_file=configuration.ssl_ca_cert or None,
        cert_file=configuration.cert_file or None,
        key_file=configuration.key_file or None,
        verify=bool(configuration.verify_ssl),
        tls_server_name=getattr(configuration, "tls_server_name", None) or None,
        proxy=configuration.proxy or None,
        authorization=authorization,
        configuration=configuration,
    )
