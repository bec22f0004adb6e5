"""kubetune's training core: txtai's HFTrainer behaviour, runnable as a container.

`HFTrainer` is imported lazily so that `kubetune_trainer.spec` and
`kubetune_trainer.protocol` (used by the operator, which has no torch) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["HFTrainer", "__version__"]

if TYPE_CHECKING:
    from kubetune_trainer.hftrainer import HFTrainer


def __getattr__(name: str) -> Any:
    if name == "HFTrainer":
        from kubetune_trainer.hftrainer import HFTrainer

        return HFTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
