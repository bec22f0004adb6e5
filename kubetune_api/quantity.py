"""Byte sizes as Kubernetes writes them (80Gi, 40G, 81920Mi) and as people read them."""

from __future__ import annotations

import re

_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|)\s*$")


def parse_bytes(text: str) -> int:
    """Bytes in a Kubernetes quantity such as 80Gi or 40G; ValueError for anything else."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size: write it as Kubernetes does, e.g. 80Gi, 24Gi or 40G")
    return int(float(match[1]) * _SUFFIXES[match[2]])


def format_bytes(count: float) -> str:
    """A size for people: GiB with one decimal from 1 GiB up, MiB below."""
    if abs(count) >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.0f} MiB"
