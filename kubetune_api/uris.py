"""The URI schemes a FineTuneJob may use for its base model, data and output.

`pvc://CLAIM/PATH` is resolved by the operator into a mounted local path before the
trainer sees it; the trainer reads the rest itself (fsspec for object stores and the web).
`oci://REGISTRY/REPOSITORY:TAG` is an output only: the trainer pushes the model to a
registry as an OCI artifact (`kubetune_api.oci_reference`, `kubetune_api.oci_layout`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from kubetune_api.oci_reference import OCI_SCHEME, check_oci_output

# URIs are bounded so that the CRD's CEL rules on them stay within the API server's cost budget.
MAX_URI = 4096

LOCAL_SCHEMES = frozenset({"", "file"})
OBJECT_STORE_SCHEMES = frozenset({"s3", "gs", "gcs", "az", "abfs", "abfss"})
WEB_SCHEMES = frozenset({"http", "https"})
HUB_SCHEME = "hf"
PVC_SCHEME = "pvc"
DATA_SCHEMES = LOCAL_SCHEMES | OBJECT_STORE_SCHEMES | WEB_SCHEMES | {HUB_SCHEME, PVC_SCHEME}
OUTPUT_SCHEMES = LOCAL_SCHEMES | OBJECT_STORE_SCHEMES | {PVC_SCHEME, OCI_SCHEME}
# Where a run's files (run marker, checkpoints, the model before a push) can live: every
# output but a registry, which holds finished artifacts only.
WORK_SCHEMES = OUTPUT_SCHEMES - {OCI_SCHEME}
# Outputs that outlive the pod. A local path (or file://) inside the trainer pod is on its
# ephemeral disk and vanishes with it, so it is never an acceptable model location there.
PERSISTENT_WORK_SCHEMES = OBJECT_STORE_SCHEMES | {PVC_SCHEME}
PERSISTENT_OUTPUT_SCHEMES = PERSISTENT_WORK_SCHEMES | {OCI_SCHEME}
# The pip package that provides each scheme's fsspec backend (the trainer reads data and
# writes outputs with them; the client fetches artifacts with them).
BACKEND_PACKAGES: dict[str, str] = {
    "s3": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}


# pvc://CLAIM/PATH: CLAIM a PersistentVolumeClaim name (a DNS subdomain), PATH segments
# non-empty. Plain RE2 syntax: the CRD's CEL rules use the same patterns.
PVC_CLAIM_PATTERN = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
PVC_URI_PATTERN = rf"^pvc://{PVC_CLAIM_PATTERN}(/[^/]+)*/?$"
# "." and ".." segments would leave the claim's mount (pvc://models/../../cache writes to the
# pod's ephemeral disk while the status says Succeeded).
DOT_SEGMENT_PATTERN = r"/[.][.]?(/|$)"
PVC_FORM = "pvc://CLAIM/PATH (CLAIM a PersistentVolumeClaim name, PATH without '.', '..' or empty segments)"


def uri_scheme(uri: str) -> str:
    """The lower-case scheme of a URI; "" for a plain local path (also on Windows)."""
    scheme = urlsplit(uri).scheme.lower()
    return "" if len(scheme) == 1 else scheme  # "C:\\data" is a drive letter, not a scheme


def check_scheme(uri: str, allowed: frozenset[str], what: str) -> str:
    """`uri`, or a ValueError naming the schemes `what` (data, output) may use."""
    scheme = uri_scheme(uri)
    written = uri.split(":", 1)[0]  # urlsplit lower-cases the scheme; keep what the user wrote
    if scheme and written != scheme:
        # fsspec only knows lower-case protocols: "S3://" would fail at run time instead.
        raise ValueError(f"write the URI scheme in lower case: {scheme}://, not {written}://")
    if scheme not in allowed:
        shown = ", ".join([*sorted(f"{s}://" for s in allowed if s), "a local path"])
        raise ValueError(f"unsupported URI scheme {scheme!r} for {what}; use one of: {shown}")
    if scheme == PVC_SCHEME:
        check_pvc_uri(uri)
    if scheme == OCI_SCHEME:
        check_oci_output(uri)
    return uri


def check_pvc_uri(uri: str) -> str:
    """`uri`, or a ValueError saying what is wrong with it as pvc://CLAIM/PATH."""
    claim = uri.removeprefix(f"{PVC_SCHEME}://").split("/", 1)[0]
    if not claim:
        raise ValueError(f"{uri} names no claim: write {PVC_FORM}")
    if len(claim) > 253 or not re.fullmatch(PVC_CLAIM_PATTERN, claim):
        raise ValueError(f"{claim!r} in {uri} is not a PersistentVolumeClaim name: write {PVC_FORM}")
    if re.search(DOT_SEGMENT_PATTERN, uri):
        raise ValueError(f"{uri}: '.' and '..' would leave the claim: write {PVC_FORM}")
    if not re.fullmatch(PVC_URI_PATTERN, uri):
        raise ValueError(f"{uri} has an empty path segment (//): write {PVC_FORM}")
    return uri
