"""What a reader of an output location needs to know of its layout (the trainer writes it,
see `kubetune_trainer.artifacts`): the model files at the top, `merged/`, `kubetune.json`,
and transformers' `checkpoint-<step>/` folders, which only a resumed run needs.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

METADATA_FILE = "kubetune.json"  # written last: its presence marks a finished run
RUN_MARKER = "kubetune-run.json"  # which run owns the output (kubetune_trainer.ownership)
MERGED_DIR = "merged"
TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME: written last in a checkpoint
# transformers' PREFIX_CHECKPOINT_DIR + step.
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
# Entries of a claim's root that are the filesystem's, not the run's (a fresh volume's root).
FOREIGN_ENTRIES = frozenset({"lost+found"})
# Bookkeeping that is no part of a copy of the model.
NOT_THE_MODEL = frozenset({RUN_MARKER})


def wanted(relative: PurePosixPath, checkpoints: bool) -> bool:
    """Whether a file (its path inside the artifact) belongs in a copy of the model."""
    top = relative.parts[0] if relative.parts else ""
    if top in FOREIGN_ENTRIES or (len(relative.parts) == 1 and top in NOT_THE_MODEL):
        return False
    return checkpoints or not CHECKPOINT_DIR.match(top)
