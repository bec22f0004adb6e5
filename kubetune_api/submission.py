"""What `Client.submit` sends: a FineTuneJob object from a spec, a manifest or HFTrainer's
keywords, checked before anything reaches the cluster.

Two checks, in this order:

* the paths: a data file, model folder or output on this machine is out of the cluster's
  reach; the message says so and names the URI forms that work;
* the one validation path (`kubetune_api.manifest.parse_manifest`), so a mistake gets the
  same message as `kubetune validate` and the operator would give.

The object goes to the API server as written (plus name and namespace), as `kubectl
apply` sends it: the CRD's defaults and the operator's settings fill in the rest.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.hftrainer_spec import CLUSTER_DATA_FORMS, NotForClusterError
from kubetune_api.manifest import FineTuneJobManifest, ManifestError, parse_manifest
from kubetune_api.resource import API_VERSION_STRING, KIND
from kubetune_api.training import TrainingSpec
from kubetune_api.uris import LOCAL_SCHEMES, uri_scheme
from kubetune_api.validation import ClusterPolicy

# GPUs per node are the cluster's to limit: the operator refuses too many (InvalidSpec).
SUBMIT_POLICY = ClusterPolicy(max_gpus_per_node=None)
# A spec without output gets the operator's defaultOutput, which this machine cannot see. A
# stand-in lets the rest of the spec be checked; the object is sent without it, and an
# operator without a default refuses the run (reason InvalidSpec, naming the setting).
OPERATOR_DEFAULT_OUTPUT = "pvc://operator-default-output"
CLUSTER_OUTPUT_FORMS = "pvc://CLAIM/PATH, s3://, gs://, az://"
GENERATED_NAME_LIMIT = 40  # the API server appends 5 characters to a generateName


@dataclass(frozen=True)
class Submission:
    """A FineTuneJob ready to create: the object to send and what validation made of it."""

    body: dict[str, Any]
    manifest: FineTuneJobManifest

    @property
    def name(self) -> str:
        """The name, or the generateName prefix the API server completes."""
        return self.manifest.name


def spec_document(
    spec: FineTuneJobSpec | TrainingSpec | Mapping[str, Any],
    name: str | None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A FineTuneJob object around a spec; without a name, one the API server generates
    from the base model's name."""
    raw = (
        spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        if isinstance(spec, TrainingSpec)
        else copy.deepcopy(dict(spec))
    )
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": generated_prefix(raw)}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": API_VERSION_STRING, "kind": KIND, "metadata": metadata, "spec": raw}


def generated_prefix(spec: Mapping[str, Any]) -> str:
    """`<base model's last path segment>-`, as a valid name prefix ("finetune-" without one)."""
    model = str((spec.get("base") or {}).get("model") or "")
    last = model.rstrip("/").rsplit("/", 1)[-1].lower()
    cleaned = re.sub(r"[^a-z0-9-]+", "-", last).strip("-")[:GENERATED_NAME_LIMIT].strip("-")
    return f"{cleaned or 'finetune'}-"


def _is_local(uri: Any) -> bool:
    return isinstance(uri, str) and uri_scheme(uri) in LOCAL_SCHEMES


def check_reachable(spec: Mapping[str, Any]) -> None:
    """NotForClusterError for a location only this machine can reach."""
    data = spec.get("data") or {}
    for field in ("train", "validation"):
        uri = data.get(field) if isinstance(data, Mapping) else None
        if _is_local(uri):
            raise NotForClusterError(
                f"spec.data.{field}: {uri!r} is a path on this machine, which the cluster cannot read; "
                f"copy the data where the cluster can read it and use its URI: {CLUSTER_DATA_FORMS}"
            )
    model = (spec.get("base") or {}).get("model") if isinstance(spec.get("base"), Mapping) else None
    # A hub id (org/name) looks like a relative path: only a file:// URI or a folder that
    # exists here is surely this machine's.
    if isinstance(model, str) and (uri_scheme(model) == "file" or (_is_local(model) and os.path.exists(model))):
        raise NotForClusterError(
            f"spec.base.model: {model!r} is a path on this machine, which the cluster cannot read; "
            f"push the model to the hub (org/name) or copy it where the cluster can read it: {CLUSTER_DATA_FORMS}"
        )
    output = spec.get("output") if isinstance(spec.get("output"), Mapping) else {}
    uri = (output or {}).get("uri")
    if _is_local(uri):
        raise NotForClusterError(
            f"spec.output.uri: {uri!r} is a path on this machine, which the cluster cannot write to "
            f"(and the model must outlive the trainer pod); use one of: {CLUSTER_OUTPUT_FORMS}"
        )


def prepare(document: Mapping[str, Any], namespace: str, policy: ClusterPolicy = SUBMIT_POLICY) -> Submission:
    """The object to create in `namespace`, checked; NotForClusterError or ManifestError if it
    cannot run there. A namespace written in the object must be `namespace` (as kubectl says)."""
    body = copy.deepcopy(dict(document))
    metadata = body.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise ManifestError("metadata: expected a mapping")
    written = metadata.get("namespace")
    if written and written != namespace:
        raise ManifestError(
            f"metadata.namespace: the object says {written!r}, the request {namespace!r}: "
            "drop one of them or make them agree"
        )
    metadata["namespace"] = namespace
    spec = body.get("spec")
    if isinstance(spec, Mapping):
        check_reachable(spec)
    if not (isinstance(spec, Mapping) and spec.get("output")) and policy.default_output is None:
        policy = replace(policy, default_output=OPERATOR_DEFAULT_OUTPUT)
    return Submission(body=body, manifest=parse_manifest(body, policy))
