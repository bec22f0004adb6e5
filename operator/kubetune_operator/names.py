"""Names of the objects the operator makes: deterministic, valid, never shared.

The labels and the rule that fits a name into a DNS label (`dns_label`) are in
`kubetune_api.trainer_pod`, which the client selects pods by as well.
"""

from __future__ import annotations

from kubetune_api.finetunejob import MAX_NODES
from kubetune_api.trainer_pod import MAX_LABEL, digest, dns_label


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
