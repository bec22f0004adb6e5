"""Pulling a model pushed to a registry (`status.artifact.uri` oci://REGISTRY/REPOSITORY@sha256:...).

Directly from this machine, with its Docker config (`$DOCKER_CONFIG/config.json` or
`~/.docker/config.json`, as `docker login` writes it). The manifest is fetched by digest
and checked against it; each layer is checked against its own digest before its one file
(`data/<file>`, see kubetune_api.oci_layout) is copied out, so the files are the ones pushed.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from kubetune_api.fetch_pvc import FetchError
from kubetune_api.oci_layout import extract_file_layer, manifest_files
from kubetune_api.oci_reference import parse_pinned
from kubetune_api.oci_registry import RegistryError, RegistrySession, registry_credentials

_READ_CHUNK = 8 << 20


def fetch_from_registry(uri: str, destination: Path, *, insecure: bool = False) -> list[Path]:
    """Copy the model at `uri` into `destination`; the files written. `insecure`: plain HTTP."""
    try:
        reference = parse_pinned(uri)
    except ValueError as error:
        raise FetchError(str(error)) from None
    hint = "log in to the registry (docker login, which writes ~/.docker/config.json, or set DOCKER_CONFIG)"
    try:
        session = RegistrySession(
            reference, insecure=insecure, credentials=registry_credentials(reference.registry), credentials_hint=hint
        )
        session.check()
        found = session.manifest(reference.reference)
        if found is None:
            raise FetchError(f"{uri}: no such artifact in the registry (deleted, or garbage-collected?)")
        manifest, raw = found
        if reference.digest and f"sha256:{hashlib.sha256(raw).hexdigest()}" != reference.digest:
            raise FetchError(f"{uri}: the registry sent a manifest with another digest")
        files = manifest_files(manifest)
        written = []
        scratch = Path(tempfile.mkdtemp(prefix="kubetune-fetch-"))
        try:
            for name, layer in files:
                downloaded = scratch / "layer.tar"
                session.download_blob(str(layer["digest"]), downloaded)
                _check_digest(downloaded, str(layer["digest"]), name)
                target = destination.joinpath(*name.split("/"))
                extract_file_layer(downloaded, name, target)
                written.append(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except RegistryError as error:
        raise FetchError(f"{uri}: {error}") from None
    except ValueError as error:  # not a kubetune artifact, an unsafe name, a layer with other content
        raise FetchError(f"{uri}: {error}") from None
    if not written:
        raise FetchError(f"nothing to copy at {uri}: the artifact holds no files")
    return written


def _check_digest(path: Path, digest: str, name: str) -> None:
    sha256 = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            sha256.update(chunk)
    if f"sha256:{sha256.hexdigest()}" != digest:
        raise FetchError(f"the layer of {name} does not match its digest {digest}: not what was pushed")
