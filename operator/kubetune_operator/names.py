"""Names and labels of the objects the operator makes: deterministic, valid, never shared.

Kubernetes limits what a name may hold: a DNS label (63 characters, lower-case letters,
digits and '-') for Job names that become label values and pod hostnames, Service
names and volume names; label values allow '.' too. A FineTuneJob name may be a 253-
character DNS subdomain with dots. `dns_label` is the one rule for fitting a name in: dots
become dashes, and a name that had to be cut or changed gets a digest of the original, so
two FineTuneJobs never share one.
"""

from __future__ import annotations

import hashlib

from kubetune_api.finetunejob import MAX_NODES
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


def job_name(finetunejob: str, nodes: int = 1) -> str:
    """`<name>-train`, cut and suffixed with a digest when that exceeds 63 characters.

    Multi-node: the Job controller names each pod's host `<job>-<index>`, a DNS label, so
    the Job name must leave room for the index and hold no dots (FineTuneJob names may).
    """
    if nodes <= 1:
        return dns_label(finetunejob, "-train", dots=True)
    return dns_label(finetunejob, "-train", limit=MAX_LABEL - len(f"-{MAX_NODES - 1}"))


def run_object_name(finetunejob: str, uid: str) -> str:
    """`<name>-<tag>` (a DNS-1035 label) for the objects a distributed run gets besides its Job
    (headless Service, NetworkPolicy).

    The tag is a digest of the FineTuneJob's uid: an object left behind by a deleted
    FineTuneJob of the same name (garbage collection takes a moment) has another name, so
    a 409 on creation always means our own, and nothing needs reading back. A name that
    starts with a digit gets a letter in front (DNS-1035).
    """
    base = finetunejob if finetunejob[0].isalpha() else f"t-{finetunejob}"
    return dns_label(base, f"-{digest(uid, 8)}")


def label_value(name: str) -> str:
    """A FineTuneJob name as a label value (at most 63 characters; names may be 253). The
    exact name is also kept in an annotation, which has no such limit."""
    return dns_label(name, dots=True)


def selector_labels(finetunejob: str) -> dict[str, str]:
    """Labels on the Job and its pods that the operator watches and selects by."""
    return {LABEL_NAME: TRAINER_APP, LABEL_MANAGED_BY: MANAGER, LABEL_FINETUNEJOB: label_value(finetunejob)}


# The server-side label selector of the operator's Job and pod watches.
WATCH_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_FINETUNEJOB}"
