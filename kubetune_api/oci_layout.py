"""How a trained model sits in a registry: KAITO's adapter image layout, one file per layer.

An `oci://` output is an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`)
that container runtimes, Kubernetes image volumes, KAITO, skopeo and crane all read:

* `artifactType`: `application/vnd.kubetune.adapter.v1` (a LoRA adapter) or
  `application/vnd.kubetune.model.v1` (a whole model), for `oras discover` and registry UIs;
* `config`: an image config (`application/vnd.oci.image.config.v1+json`) holding only
  `rootfs.diff_ids`, without `os` / `architecture`: a platform-independent image, as KAITO's
  adapter image spec asks (containerd needs the diff ids to unpack it);
* `layers`: one uncompressed tar (`application/vnd.oci.image.layer.v1.tar`) per file of the
  model, holding `data/<file>` (`adapter_config.json`, `adapter_model.safetensors`, the
  tokenizer, `kubetune.json`, ...). Each layer's `io.kubetune.file` annotation names the
  file. Tars are written reproducibly (mode 0644, owner 0, mtime 0): the same file is the
  same blob, so a registry stores an unchanged tokenizer once. Uncompressed: safetensors do
  not shrink under gzip, and a layer's digest is then its diff id;
* `annotations`: what the run was (kind, task, base model, FineTuneJob, training hash,
  kubetune version, creation time), readable without pulling a blob.

Mounted as an image (KAITO, an image volume), the files are under `/data`. Layers carry no
`org.opencontainers.image.title`: `oras pull` would save each tar under the file's own
name, a file that is not what its name says.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
ARTIFACT_TYPES: dict[str, str] = {
    "adapter": "application/vnd.kubetune.adapter.v1",
    "full": "application/vnd.kubetune.model.v1",
}
DATA_DIR = "data"  # where the files are when the artifact is mounted or unpacked as an image
ANNOTATION_FILE = "io.kubetune.file"
ANNOTATION_KIND = "io.kubetune.kind"
ANNOTATION_TASK = "io.kubetune.task"
ANNOTATION_BASE = "io.kubetune.base-model"
ANNOTATION_JOB = "io.kubetune.job"
ANNOTATION_TRAINING_HASH = "io.kubetune.training-hash"
ANNOTATION_VERSION = "io.kubetune.version"
ANNOTATION_CREATED = "org.opencontainers.image.created"
_COPY_CHUNK = 8 << 20


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor of a blob this machine holds (`path`)."""

    media_type: str
    digest: str
    size: int
    path: Path
    annotations: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            found["annotations"] = dict(self.annotations)
        return found


class _Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, target: Any) -> None:
        self.target, self.sha256, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:  # tarfile asks where it starts
        return self.size

    def write(self, data: Any) -> int:
        self.target.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def file_layer(source: Path, name: str, target: Path) -> Descriptor:
    """Write the layer of one file (`name`: its path in the model, POSIX) to `target`."""
    info = tarfile.TarInfo(f"{DATA_DIR}/{name}")
    info.size, info.mode, info.mtime = source.stat().st_size, 0o644, 0
    with target.open("wb") as raw:
        hashing = _Hashing(raw)
        # PAX: files over 8 GiB (a model shard) do not fit a ustar header.
        with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT) as tar, source.open("rb") as data:
            tar.addfile(info, data)
    digest = f"sha256:{hashing.sha256.hexdigest()}"
    return Descriptor(LAYER_MEDIA_TYPE, digest, hashing.size, target, {ANNOTATION_FILE: name})


def blob(content: bytes, media_type: str, target: Path) -> Descriptor:
    """A small blob (the config) written to `target`."""
    target.write_bytes(content)
    return Descriptor(media_type, f"sha256:{hashlib.sha256(content).hexdigest()}", len(content), target)


def image_config(layers: Sequence[Descriptor]) -> bytes:
    # Uncompressed layers: each one's digest is its diff id.
    return _canonical({"rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]}})


def image_manifest(
    config: Descriptor, layers: Sequence[Descriptor], kind: str, annotations: Mapping[str, str]
) -> bytes:
    """The manifest's exact bytes (its digest is what status.artifact.uri pins)."""
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": ARTIFACT_TYPES[kind],
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
            "annotations": dict(annotations),
        }
    )


def manifest_files(manifest: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(file name, layer descriptor) of a kubetune manifest; ValueError for anything else."""
    if manifest.get("artifactType") not in ARTIFACT_TYPES.values():
        raise ValueError(
            f"not a kubetune model (artifactType {manifest.get('artifactType')!r}, expected one of "
            f"{sorted(ARTIFACT_TYPES.values())})"
        )
    found = []
    for layer in manifest.get("layers") or []:
        name = (layer.get("annotations") or {}).get(ANNOTATION_FILE)
        if layer.get("mediaType") != LAYER_MEDIA_TYPE or not name:
            raise ValueError(f"layer {layer.get('digest')} is not a kubetune file layer")
        found.append((safe_name(name), layer))
    return found


def safe_name(name: str) -> str:
    """A file name from a manifest, refused when it would leave the folder it is copied into."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("", ".", "..") for part in path.parts):
        raise ValueError(f"unsafe file name {name!r} in the manifest")
    return path.as_posix()


def extract_file_layer(layer: Path, name: str, target: Path) -> None:
    """Copy the one file of a layer (`data/<name>`) to `target`; ValueError if the layer holds anything else."""
    with tarfile.open(layer, mode="r:") as tar:
        members = tar.getmembers()
        expected = f"{DATA_DIR}/{name}"
        if len(members) != 1 or members[0].name != expected or not members[0].isfile():
            raise ValueError(f"layer for {name} does not hold exactly the file {expected}")
        source = tar.extractfile(members[0])
        assert source is not None  # a regular file member
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            while chunk := source.read(_COPY_CHUNK):
                out.write(chunk)


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
