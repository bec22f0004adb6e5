"""How a FineTuneJob's trainer Jobs and pods are named and labelled.

The operator sets these labels and annotations; the client (`kubetune logs`, `kubetune
fetch`) selects by them. Both import them from here so the two can never disagree.

Kubernetes limits what a name may hold: a DNS label (63 characters, lower-case letters,
digits and '-') for Job names that become label values and pod hostnames, Service
names and volume names; label values allow '.' too. A FineTuneJob name may be a 253-
character DNS subdomain with dots. `dns_label` is the one rule for fitting a name in: dots
become dashes, and a name that had to be cut or changed gets a digest of the original, so
two FineTuneJobs never share one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from kubetune_api.resource import API_GROUP

MAX_LABEL = 63  # a DNS label, and a label value
DIGEST = 10

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_FINETUNEJOB = f"{API_GROUP}/finetunejob"
# On the trainer pods: the FineTuneJob's uid, so a run's NetworkPolicy selects its own pods
# only (a namesake's pods, still being deleted, carry the same name label).
LABEL_RUN = f"{API_GROUP}/run"
TRAINER_APP = "kubetune-trainer"
MANAGER = "kubetune"
# The exact FineTuneJob name (a label value is cut to 63 characters; names may be 253).
ANNOTATION_FINETUNEJOB = f"{API_GROUP}/finetunejob"
# The container that runs the trainer in every trainer pod.
CONTAINER_NAME = "trainer"
# The non-root identity the trainer runs (and writes its outputs) as; the image's USER too.
TRAINER_UID = 1000
# Set by the Job controller on each pod of an Indexed Job (also as a label since 1.28).
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def digest(text: str, length: int = DIGEST) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_label(base: str, suffix: str = "", *, prefix: str = "", limit: int = MAX_LABEL, dots: bool = False) -> str:
    """`prefix + base + suffix` in at most `limit` characters; with `dots` False, a DNS label.

    Unchanged when it fits; otherwise `base` is cut and followed by a digest of it.
    """
    cleaned = base if dots else base.replace(".", "-")
    name = f"{prefix}{cleaned}{suffix}"
    if len(name) <= limit and cleaned == base:
        return name
    keep = limit - len(prefix) - len(suffix) - DIGEST - 1
    return f"{prefix}{cleaned[:keep].rstrip('-.')}-{digest(base)}{suffix}"


def label_value(name: str) -> str:
    """A FineTuneJob name as a label value (at most 63 characters; names may be 253). The
    exact name is also kept in an annotation, which has no such limit."""
    return dns_label(name, dots=True)


def selector_labels(finetunejob: str) -> dict[str, str]:
    """Labels on the Job and its pods that the operator watches and selects by."""
    return {LABEL_NAME: TRAINER_APP, LABEL_MANAGED_BY: MANAGER, LABEL_FINETUNEJOB: label_value(finetunejob)}


def run_pods_selector(finetunejob: str, uid: str) -> str:
    """The label selector of one run's trainer pods: its name, and its uid so that the pods
    of a deleted namesake (garbage collection takes a moment) are not taken for its own."""
    return f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_FINETUNEJOB}={label_value(finetunejob)},{LABEL_RUN}={uid}"


def completion_index(metadata: Mapping[str, Any]) -> int:
    """A pod's completion index in an Indexed Job (its rank's node); 0 for the pod of a plain Job."""
    for source in (metadata.get("annotations"), metadata.get("labels")):
        text = (source or {}).get(COMPLETION_INDEX_KEY)
        if text is not None and str(text).isdigit():
            return int(text)
    return 0


def creation_order(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """Sorts pods of one Job oldest first: by creation time (RFC 3339 sorts as text), then name."""
    return str(metadata.get("creationTimestamp") or ""), str(metadata.get("name", ""))


# The server-side label selector of the operator's Job and pod watches.
WATCH_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_FINETUNEJOB}"
