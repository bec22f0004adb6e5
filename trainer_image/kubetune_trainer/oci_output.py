"""Pushing the trained model to an `oci://REGISTRY/REPOSITORY:TAG` output (layout: kubetune_api.oci_layout).

A registry holds finished artifacts only, so a registry output's run works in its
`output.checkpointUri` (run marker, checkpoints, the model before the push: everything an
object-store or claim output holds; a local run without one stages in a temporary folder
and cannot resume). The registry is met twice:

* preflight, on every process before anything is loaded (`RegistryOutput.preflight`): the
  registry is reachable, the credentials work, and the tag holds nothing another run made
  (a kubetune artifact with another training hash, or not kubetune's at all, is
  OutputInUse: kubetune never overwrites another run's model). Hours of training are not
  spent on a push that was never going to work;
* after the model is published to the work location, global rank 0 pushes one layer per
  file, then the config, then the manifest under the tag (`push`), and reports the
  digest-pinned reference `oci://REGISTRY/REPOSITORY@sha256:...` as the artifact.

Failures: refused credentials, no registry, TLS to a plain-HTTP registry -> ConfigError
(InvalidConfig, never retried, the message names spec.registrySecret or
spec.output.insecureRegistry); unreachable, 5xx, 429 -> RuntimeError (TrainingError,
retried; a retry resumes from the last checkpoint and pushes again).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import NoReturn

from kubetune_api import __version__
from kubetune_api.oci_layout import (
    ANNOTATION_BASE,
    ANNOTATION_CREATED,
    ANNOTATION_JOB,
    ANNOTATION_KIND,
    ANNOTATION_TASK,
    ANNOTATION_TRAINING_HASH,
    ANNOTATION_VERSION,
    ARTIFACT_TYPES,
    CONFIG_MEDIA_TYPE,
    blob,
    file_layer,
    image_config,
    image_manifest,
)
from kubetune_api.oci_reference import OciReference, check_oci_output
from kubetune_api.oci_registry import RegistryError, RegistrySession, registry_credentials
from kubetune_api.output_layout import wanted
from kubetune_api.protocol import ENV_REGISTRY_AUTH
from kubetune_api.training import TrainingSpec
from kubetune_api.uris import OCI_SCHEME, uri_scheme
from kubetune_trainer.artifacts import OutputLocation, staging_dir
from kubetune_trainer.errors import ConfigError, OutputInUseError
from kubetune_trainer.ownership import RunIdentity

CREDENTIALS_HINT = (
    "give spec.registrySecret a kubernetes.io/dockerconfigjson Secret whose entry for the registry may push "
    f"to this repository (${ENV_REGISTRY_AUTH} for a local run, or docker login)"
)


def _raise(error: RegistryError, field: str) -> NoReturn:
    if error.retryable:
        raise RuntimeError(f"{field}: {error}") from None
    raise ConfigError(f"{field}: {error}") from None


class RegistryOutput:
    """The registry of a `spec.output.uri` that is oci://."""

    def __init__(self, spec: TrainingSpec) -> None:
        assert spec.output is not None
        self.spec = spec
        self.target: OciReference = check_oci_output(spec.output.uri)
        try:
            credentials = registry_credentials(self.target.registry)
            self.session = RegistrySession(
                self.target,
                insecure=spec.output.insecure_registry,
                credentials=credentials,
                credentials_hint=CREDENTIALS_HINT,
            )
        except RegistryError as error:
            _raise(error, "output.uri")

    @classmethod
    def of(cls, spec: TrainingSpec) -> RegistryOutput | None:
        """The spec's registry output, or None for any other kind of output."""
        if spec.output is None or uri_scheme(spec.output.uri) != OCI_SCHEME:
            return None
        return cls(spec)

    def preflight(self, run: RunIdentity) -> list[str]:
        """Check the registry before training; warnings (a tag this spec already pushed is overwritten)."""
        try:
            self.session.check()
            found = self.session.manifest(self.target.reference)
        except RegistryError as error:
            _raise(error, "output.uri")
        if found is None:
            return []
        manifest, _ = found
        annotations = manifest.get("annotations") or {}
        owner = annotations.get(ANNOTATION_TRAINING_HASH)
        fix = f"push to another tag (output.uri), or delete {self.target.image()} from the registry"
        if manifest.get("artifactType") not in ARTIFACT_TYPES.values() or owner is None:
            raise OutputInUseError(
                f"output.uri {self.target.uri()} already holds an artifact kubetune did not push; "
                f"kubetune never overwrites it: {fix}"
            )
        if owner != run.training_hash:
            raise OutputInUseError(
                f"output.uri {self.target.uri()} holds the model of FineTuneJob {annotations.get(ANNOTATION_JOB)}, "
                f"trained from another spec; kubetune never overwrites another run's model: {fix}"
            )
        return [f"output.uri {self.target.uri()} holds an earlier push of this spec: the tag will point to the new one"]

    def push(self, output: OutputLocation, kind: str, run: RunIdentity) -> str:
        """Push the published model in `output.local_dir`; the digest-pinned oci:// URI."""
        annotations = {
            ANNOTATION_KIND: kind,
            ANNOTATION_TASK: str(self.spec.task),
            ANNOTATION_BASE: self.spec.base.model,
            ANNOTATION_JOB: run.job,
            ANNOTATION_TRAINING_HASH: run.training_hash,
            ANNOTATION_VERSION: __version__,
            ANNOTATION_CREATED: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        # Layers are written one at a time to the staging area and removed once uploaded: at
        # most one file's worth of extra disk.
        scratch = staging_dir("kubetune-oci-")
        try:
            layers = []
            for index, (name, path) in enumerate(model_files(output.local_dir)):
                layer = file_layer(path, name, scratch / f"layer-{index}.tar")
                self.session.push_blob(layer)
                layer.path.unlink()
                layers.append(layer)
            if not layers:
                raise RuntimeError(f"nothing to push from {output.local_dir}: the model was not saved")
            config = blob(image_config(layers), CONFIG_MEDIA_TYPE, scratch / "config.json")
            self.session.push_blob(config)
            digest = self.session.push_manifest(image_manifest(config, layers, kind, annotations), str(self.target.tag))
        except RegistryError as error:
            _raise(error, "output.uri")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self.target.pinned(digest).uri()


def model_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(name in the model, path) of every file that belongs to the artifact, sorted: no checkpoints,
    no run marker (the same rule `kubetune fetch` applies to an object store)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if wanted(relative, checkpoints=False) and not relative.name.startswith("."):
            yield relative.as_posix(), path
