"""pvc://CLAIM/PATH URIs: mount the claim, hand the trainer a local path.

The trainer never talks to the Kubernetes API, so it cannot open a claim by name. The
operator mounts each distinct claim once under MOUNT_ROOT (read-write only if the
output is on it) and rewrites the URIs in the training spec to paths under the mount.
`to_user_uri` maps a path the trainer reports back to the pvc:// form the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kubetune_api.trainer_pod import dns_label
from kubetune_api.training import TrainingSpec
from kubetune_api.uris import PVC_SCHEME, uri_scheme

MOUNT_ROOT = "/mnt/pvc"


@dataclass(frozen=True)
class ClaimMount:
    claim: str
    read_only: bool

    @property
    def volume_name(self) -> str:
        # Volume names are DNS labels (63 chars); claim names may be subdomains (253).
        return dns_label(self.claim, prefix="pvc-")

    @property
    def mount_path(self) -> str:
        return f"{MOUNT_ROOT}/{self.claim}"

    def volume(self) -> dict[str, Any]:
        return {
            "name": self.volume_name,
            "persistentVolumeClaim": {"claimName": self.claim, "readOnly": self.read_only},
        }

    def volume_mount(self) -> dict[str, Any]:
        return {"name": self.volume_name, "mountPath": self.mount_path, "readOnly": self.read_only}


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def _local(uri: str) -> str:
    claim, path = _split(uri)
    return f"{MOUNT_ROOT}/{claim}/{path}".rstrip("/")


def mount_claims(training: TrainingSpec) -> tuple[TrainingSpec, list[ClaimMount]]:
    """The training spec with pvc:// URIs rewritten, and the claims to mount (sorted)."""
    data: dict[str, Any] = training.model_dump(by_alias=False, exclude_none=True)
    read_only: dict[str, bool] = {}

    def visit(uri: str | None, writable: bool) -> str | None:
        if uri is None or uri_scheme(uri) != PVC_SCHEME:
            return uri
        claim, _ = _split(uri)
        read_only[claim] = read_only.get(claim, True) and not writable
        return _local(uri)

    data["base"]["model"] = visit(data["base"]["model"], writable=False)
    data["data"]["train"] = visit(data["data"]["train"], writable=False)
    if "validation" in data["data"]:
        data["data"]["validation"] = visit(data["data"]["validation"], writable=False)
    if "output" in data:
        data["output"]["uri"] = visit(data["output"]["uri"], writable=True)
        if "checkpoint_uri" in data["output"]:
            data["output"]["checkpoint_uri"] = visit(data["output"]["checkpoint_uri"], writable=True)
    mounts = [ClaimMount(claim, read_only[claim]) for claim in sorted(read_only)]
    return TrainingSpec.model_validate(data), mounts


def to_user_uri(uri: str) -> str:
    """A path under a claim's mount (as the trainer reports it) as pvc://CLAIM/PATH."""
    if uri.startswith(MOUNT_ROOT + "/"):
        return f"{PVC_SCHEME}://{uri[len(MOUNT_ROOT) + 1 :]}"
    return uri
