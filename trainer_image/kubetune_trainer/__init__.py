"""kubetune's training core: txtai's HFTrainer behaviour, runnable as a container.

`HFTrainer` is imported lazily: `python -m kubetune_trainer --version` and the `kubetune`
command line stay quick. The contract with the operator (spec, protocol) is
`kubetune_api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubetune_api import __version__

__all__ = ["HFTrainer", "__version__"]

if TYPE_CHECKING:
    from kubetune_trainer.hftrainer import HFTrainer


def __getattr__(name: str) -> Any:
    if name == "HFTrainer":
        from kubetune_trainer.hftrainer import HFTrainer

        return HFTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
