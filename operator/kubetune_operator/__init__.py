"""kubetune's Kopf operator: FineTuneJob -> batch/v1 Job -> status.

`kopf run -m kubetune_operator` imports this package, which registers the handlers
(`kubetune_operator.handlers`) whenever Kopf is installed. Without Kopf (the trainer
image, a laptop with only the base install) the package still imports, so
`kubetune validate` and the spec models work everywhere.
"""

import importlib.util

from kubetune_api import __version__

if importlib.util.find_spec("kopf") is not None:
    from kubetune_operator import handlers  # noqa: F401  (registers the Kopf handlers)

__all__ = ["__version__"]
