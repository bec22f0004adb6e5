"""Operator settings, read once from environment variables and validated at startup.

Every setting is one environment variable (the Helm chart sets them from its values):

==================================== ============================ =====================================
Variable                             Default                      Meaning
==================================== ============================ =====================================
KUBETUNE_TRAINER_IMAGE               ghcr.io/kubetune/trainer:V   Trainer image for specs without image.
KUBETUNE_GPU_RESOURCE                nvidia.com/gpu               Extended resource that GPUs are
                                                                  requested as (amd.com/gpu, ...).
KUBETUNE_GPU_TOLERATION_KEY          nvidia.com/gpu               Taint key tolerated when gpus > 0;
                                                                  empty adds no toleration.
KUBETUNE_NAMESPACES                  (empty: cluster-wide)        Comma-separated namespaces to serve.
KUBETUNE_PROGRESS_INTERVAL_SECONDS   30                           How often a running pod's log tail is
                                                                  read for progress (> 0).
KUBETUNE_DEFAULT_OUTPUT              (unset)                      URI prefix for specs without
                                                                  spec.output: PREFIX/NAMESPACE/NAME.
                                                                  Unset: such specs are rejected.
KUBETUNE_METRICS_PORT                8080                         Prometheus /metrics port; 0 disables.
KUBETUNE_MAX_GPUS_PER_NODE           8                            Larger spec.resources.gpus is rejected.
KUBETUNE_CACHE_SIZE_LIMIT            100Gi                        sizeLimit of the trainer's /cache
                                                                  (hub downloads, staging) unless
                                                                  spec.resources.ephemeralStorage.
KUBETUNE_TMP_SIZE_LIMIT              10Gi                         sizeLimit of the trainer's /tmp.
KUBETUNE_GPU_MEMORY                  (unset)                      Memory of one GPU (e.g. 80Gi), for
                                                                  the preflight memory estimate when
                                                                  no node the run may land on has an
                                                                  nvidia.com/gpu.memory label.
==================================== ============================ =====================================

`OperatorSettings.from_env()` raises `SettingsError` naming the variable and what a
valid value looks like; the operator refuses to start with a bad value rather than
failing later on every FineTuneJob.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from kubetune_api import __version__
from kubetune_api.finetunejob import QUANTITY_PATTERN
from kubetune_api.quantity import parse_bytes
from kubetune_api.uris import PERSISTENT_WORK_SCHEMES
from kubetune_api.validation import ClusterPolicy, check_persistent_output

ENV_TRAINER_IMAGE = "KUBETUNE_TRAINER_IMAGE"
ENV_GPU_RESOURCE = "KUBETUNE_GPU_RESOURCE"
ENV_GPU_TOLERATION_KEY = "KUBETUNE_GPU_TOLERATION_KEY"
ENV_NAMESPACES = "KUBETUNE_NAMESPACES"
ENV_PROGRESS_INTERVAL = "KUBETUNE_PROGRESS_INTERVAL_SECONDS"
ENV_DEFAULT_OUTPUT = "KUBETUNE_DEFAULT_OUTPUT"
ENV_METRICS_PORT = "KUBETUNE_METRICS_PORT"
ENV_MAX_GPUS_PER_NODE = "KUBETUNE_MAX_GPUS_PER_NODE"
ENV_CACHE_SIZE_LIMIT = "KUBETUNE_CACHE_SIZE_LIMIT"
ENV_TMP_SIZE_LIMIT = "KUBETUNE_TMP_SIZE_LIMIT"
ENV_GPU_MEMORY = "KUBETUNE_GPU_MEMORY"

DEFAULT_TRAINER_IMAGE = f"ghcr.io/kubetune/trainer:{__version__}"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"

# An extended resource name: an optional DNS-subdomain prefix and a name, e.g. nvidia.com/gpu.
_RESOURCE_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_QUANTITY = re.compile(QUANTITY_PATTERN)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot run with."""


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator is configured with; see the module docstring for each variable."""

    trainer_image: str = DEFAULT_TRAINER_IMAGE
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    gpu_toleration_key: str = DEFAULT_GPU_RESOURCE
    namespaces: tuple[str, ...] = ()
    progress_interval_seconds: float = 30.0
    default_output: str | None = None
    metrics_port: int = 8080
    max_gpus_per_node: int = 8
    cache_size_limit: str = "100Gi"
    tmp_size_limit: str = "10Gi"
    gpu_memory: int | None = None  # bytes of one GPU, when node labels do not say

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def serves(self, namespace: str | None) -> bool:
        """Whether objects in this namespace are ours to handle."""
        return self.clusterwide or namespace in self.namespaces

    @property
    def policy(self) -> ClusterPolicy:
        """What these settings allow a FineTuneJob (the one validation path's input)."""
        return ClusterPolicy(max_gpus_per_node=self.max_gpus_per_node, default_output=self.default_output)

    def kopf_namespace_args(self) -> list[str]:
        """The `kopf run` flags that watch exactly the configured namespaces."""
        if self.clusterwide:
            return ["--all-namespaces"]
        return [arg for namespace in self.namespaces for arg in ("--namespace", namespace)]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env

        def text(name: str, default: str) -> str:
            value = env.get(name)
            return default if value is None else value.strip()

        image = text(ENV_TRAINER_IMAGE, DEFAULT_TRAINER_IMAGE)
        if not image or any(ch.isspace() for ch in image):
            raise SettingsError(
                f"{ENV_TRAINER_IMAGE}={image!r}: expected an image reference like {DEFAULT_TRAINER_IMAGE}"
            )

        gpu_resource = text(ENV_GPU_RESOURCE, DEFAULT_GPU_RESOURCE)
        if not _RESOURCE_NAME.match(gpu_resource):
            raise SettingsError(
                f"{ENV_GPU_RESOURCE}={gpu_resource!r}: expected an extended resource name "
                "like nvidia.com/gpu or amd.com/gpu"
            )

        toleration_key = text(ENV_GPU_TOLERATION_KEY, DEFAULT_GPU_RESOURCE)
        if toleration_key and not _RESOURCE_NAME.match(toleration_key):
            raise SettingsError(
                f"{ENV_GPU_TOLERATION_KEY}={toleration_key!r}: expected a taint key "
                "like nvidia.com/gpu, or empty for none"
            )

        namespaces = tuple(dict.fromkeys(ns.strip() for ns in text(ENV_NAMESPACES, "").split(",") if ns.strip()))
        for namespace in namespaces:
            if len(namespace) > 63 or not _NAMESPACE.match(namespace):
                raise SettingsError(
                    f"{ENV_NAMESPACES}: {namespace!r} is not a namespace name; expected a comma-separated "
                    f"list like team-a,team-b, or empty to watch all namespaces"
                )

        interval = _number(env, ENV_PROGRESS_INTERVAL, "30", float)
        if not interval > 0:
            raise SettingsError(f"{ENV_PROGRESS_INTERVAL}={interval}: must be greater than 0 (seconds)")

        default_output = text(ENV_DEFAULT_OUTPUT, "").rstrip("/") or None
        if default_output is not None:
            # A prefix gets NAMESPACE/NAME appended: a registry output would have no tag and no
            # checkpoint location, so only claims and object stores can be the default.
            check_persistent_output(
                default_output, ENV_DEFAULT_OUTPUT, error=SettingsError, allowed=PERSISTENT_WORK_SCHEMES
            )

        port = _number(env, ENV_METRICS_PORT, "8080", int)
        if not 0 <= port <= 65535:
            raise SettingsError(f"{ENV_METRICS_PORT}={port}: expected a port 1-65535, or 0 to disable metrics")

        max_gpus = _number(env, ENV_MAX_GPUS_PER_NODE, "8", int)
        if max_gpus < 1:
            raise SettingsError(f"{ENV_MAX_GPUS_PER_NODE}={max_gpus}: must be at least 1")

        sizes = {}
        for name, field_name, default in (
            (ENV_CACHE_SIZE_LIMIT, "cache_size_limit", "100Gi"),
            (ENV_TMP_SIZE_LIMIT, "tmp_size_limit", "10Gi"),
        ):
            size = text(name, default)
            if not _QUANTITY.match(size):
                raise SettingsError(f"{name}={size!r}: expected a size such as 50Gi or 500M")
            sizes[field_name] = size

        gpu_memory = None
        if text(ENV_GPU_MEMORY, ""):
            try:
                gpu_memory = parse_bytes(text(ENV_GPU_MEMORY, ""))
            except ValueError:
                raise SettingsError(
                    f"{ENV_GPU_MEMORY}={text(ENV_GPU_MEMORY, '')!r}: expected a size such as 80Gi"
                ) from None

        return cls(
            **sizes,
            gpu_memory=gpu_memory,
            trainer_image=image,
            gpu_resource=gpu_resource,
            gpu_toleration_key=toleration_key,
            namespaces=namespaces,
            progress_interval_seconds=interval,
            default_output=default_output,
            metrics_port=port,
            max_gpus_per_node=max_gpus,
        )


def _number(env: Mapping[str, str], name: str, default: str, kind: Callable[[str], N]) -> N:
    raw = (env.get(name) or default).strip()
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r}: expected {what}") from None
