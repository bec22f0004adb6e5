"""kubetune's Kopf operator: FineTuneJob -> batch/v1 Job -> status."""

from kubetune_trainer import __version__

__all__ = ["__version__"]
