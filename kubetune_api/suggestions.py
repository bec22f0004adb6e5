"""Closest-name hints for misspelt keys, shared by the contract's checks and the trainer.

Torch-free so that `kubetune validate`, the operator and the trainer all suggest the same
names for the same typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, valid: Iterable[str], limit: int = 3) -> str:
    """' (did you mean: a, b?)' for a misspelt name, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(valid), n=limit, cutoff=0.6)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
