"""What a reader of an output location needs to know of its layout (the trainer writes it,
see `kubetune_trainer.artifacts`): the model files at the top, `merged/`, `kubetune.json`,
and transformers' `checkpoint-<step>/` folders, which only a resumed run needs.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# transformers' PREFIX_CHECKPOINT_DIR + step (kubetune_trainer.artifacts.CHECKPOINT).
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
# Entries of a claim's root that are the filesystem's, not the run's.
FOREIGN_ENTRIES = frozenset({"lost+found"})


def wanted(relative: PurePosixPath, checkpoints: bool) -> bool:
    """Whether a file (its path inside the artifact) belongs in a copy of the model."""
    top = relative.parts[0] if relative.parts else ""
    if top in FOREIGN_ENTRIES:
        return False
    return checkpoints or not CHECKPOINT_DIR.match(top)
