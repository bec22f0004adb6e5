"""Reading FineTuneJob manifests: the same YAML a user gives to `kubectl apply`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.resource import API_GROUP, API_VERSION, KIND
from kubetune_api.training import describe_validation_error


class ManifestError(ValueError):
    """A manifest that is not a valid FineTuneJob; the message names the field."""


@dataclass(frozen=True)
class FineTuneJobManifest:
    name: str
    namespace: str | None
    labels: dict[str, str]
    spec: FineTuneJobSpec


def parse_manifest(document: dict[str, Any]) -> FineTuneJobManifest:
    """Validate one FineTuneJob object (already parsed from YAML or JSON)."""
    api_version = f"{API_GROUP}/{API_VERSION}"
    if document.get("apiVersion") != api_version or document.get("kind") != KIND:
        raise ManifestError(
            f"expected apiVersion: {api_version} and kind: {KIND}, got "
            f"apiVersion: {document.get('apiVersion')} and kind: {document.get('kind')}"
        )
    metadata = document.get("metadata") or {}
    name = metadata.get("name") or metadata.get("generateName")
    if not name:
        raise ManifestError("metadata.name: required")
    try:
        spec = FineTuneJobSpec.model_validate(document.get("spec") or {})
    except ValidationError as error:
        raise ManifestError(describe_validation_error(error)) from None
    return FineTuneJobManifest(
        name=name,
        namespace=metadata.get("namespace"),
        labels=dict(metadata.get("labels") or {}),
        spec=spec,
    )


def load_manifests(path: str | Path) -> list[FineTuneJobManifest]:
    """Every FineTuneJob in a (multi-document) YAML file; other kinds are skipped."""
    text = Path(path).read_text()
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    jobs = [parse_manifest(doc) for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    if not jobs:
        raise ManifestError(f"{path}: no {KIND} found")
    return jobs
