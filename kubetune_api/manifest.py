"""Reading FineTuneJob manifests: the same YAML a user gives to `kubectl apply`.

A manifest is checked the way the API server and then the operator would check it:
apiVersion and kind, metadata (name, namespace, labels as the API server validates
them), and the spec through the one validation path (`kubetune_api.validation`) with
the policy of where it will run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubetune_api.finetunejob import LABEL_VALUE_PATTERN, FineTuneJobSpec, check_qualified_keys
from kubetune_api.resource import API_VERSION_STRING, KIND
from kubetune_api.validation import ClusterPolicy, InvalidSpecError, validate_spec

# apimachinery's IsDNS1123Subdomain (object names) and IsDNS1123Label (namespaces).
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
NAME_RULE = "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253"


class ManifestError(ValueError):
    """A manifest that is not a valid FineTuneJob; the message names the field."""


@dataclass(frozen=True)
class FineTuneJobManifest:
    name: str
    namespace: str | None
    labels: dict[str, str]
    spec: FineTuneJobSpec


def _describe(document: Any) -> str:
    if not isinstance(document, dict):
        return f"a {type(document).__name__}"
    name = (document.get("metadata") or {}).get("name")
    return f"apiVersion: {document.get('apiVersion')}, kind: {document.get('kind')}" + (f" ({name})" if name else "")


def check_metadata(metadata: dict[str, Any]) -> tuple[str, str | None]:
    """(name, namespace), checked as the API server checks them."""
    name = metadata.get("name")
    generate = metadata.get("generateName")
    if not name and not generate:
        raise ManifestError("metadata.name: required")
    if name and (len(name) > 253 or not DNS_SUBDOMAIN.match(name)):
        raise ManifestError(f"metadata.name: {name!r} is not a valid name: use {NAME_RULE} characters")
    if not name and not DNS_SUBDOMAIN.match(str(generate).rstrip("-") or "x"):
        raise ManifestError(f"metadata.generateName: {generate!r} is not a valid name prefix: use {NAME_RULE}")
    namespace = metadata.get("namespace")
    if namespace is not None and (len(namespace) > 63 or not DNS_LABEL.match(namespace)):
        raise ManifestError(
            f"metadata.namespace: {namespace!r} is not a namespace name: lower-case letters, digits and '-', at most 63"
        )
    labels = metadata.get("labels") or {}
    try:
        check_qualified_keys(labels, "metadata.labels")
    except ValueError as error:
        raise ManifestError(str(error)) from None
    bad = [
        f"{key}={value!r}"
        for key, value in labels.items()
        if len(str(value)) > 63 or not _LABEL_VALUE.match(str(value))
    ]
    if bad:
        raise ManifestError(
            f"metadata.labels: {bad} not valid label values: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return str(name or generate), namespace


def parse_manifest(document: Any, policy: ClusterPolicy) -> FineTuneJobManifest:
    """Validate one FineTuneJob object (already parsed from YAML or JSON) for `policy`."""
    if (
        not isinstance(document, dict)
        or document.get("apiVersion") != API_VERSION_STRING
        or document.get("kind") != KIND
    ):
        raise ManifestError(f"expected apiVersion: {API_VERSION_STRING} and kind: {KIND}, got {_describe(document)}")
    metadata = document.get("metadata") or {}
    name, namespace = check_metadata(metadata)
    try:
        spec = validate_spec(document.get("spec"), namespace=namespace or "default", name=name, policy=policy)
    except InvalidSpecError as error:
        raise ManifestError(str(error)) from None
    return FineTuneJobManifest(name=name, namespace=namespace, labels=dict(metadata.get("labels") or {}), spec=spec)


def read_documents(path: str | Path) -> list[dict[str, Any]]:
    """The FineTuneJob objects of a (multi-document) YAML file, as written; other kinds are skipped."""
    text = Path(path).read_text()
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    jobs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    if not jobs:
        found = "; ".join(_describe(doc) for doc in documents) or "no documents"
        raise ManifestError(
            f"{path}: no {KIND} found (a {KIND} has apiVersion: {API_VERSION_STRING} and kind: {KIND}); "
            f"the file holds: {found}"
        )
    return jobs


def load_manifests(path: str | Path, policy: ClusterPolicy) -> list[FineTuneJobManifest]:
    """Every FineTuneJob in a (multi-document) YAML file, validated for `policy`."""
    return [parse_manifest(doc, policy) for doc in read_documents(path)]
