"""kubetune's contract: what the operator and the trainer agree on, with no torch and no Kopf.

* `resource`: the FineTuneJob API's names (group, version, kind, ...);
* `training` and `finetunejob`: the spec models (the CRD schema is generated from them);
* `argument_catalogue`, `arguments` and `argument_schema`: what trainingArgs, lora and
  quantize accept (a checked-in file generated from the pinned libraries), the checks the
  spec model runs with it, and the CRD schema fragments and CEL rules made from it;
* `suggestions`: closest-name hints for misspelt keys;
* `uris`: the URI schemes data, models and outputs may use;
* `protocol`: what the trainer container tells the operator (progress lines, the Result,
  exit codes), versioned;
* `launch_command`: the container command of a distributed run;
* `manifest` and `validation`: reading a FineTuneJob file and the one validation path
  shared by `kubetune validate`, `kubetune run` and the operator;
* `trainer_pod` and `status_model`: the labels of a run's pods and the shape of its status,
  written by the operator and read by the client;
* `client` (`Client`, exported here): submit, follow and fetch runs from Python, with its
  parts `kubeconfig`, `kube_http`, `submission`, `hftrainer_spec`, `run_status`,
  `trainer_logs`, `fetch_pvc`, `fetch_store`; `cluster_cli` holds its `kubetune` commands.

`kubetune_operator` and `kubetune_trainer` both import from here and never from each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetune_api.client import Client

# The one version source: pyproject.toml reads it, Chart.yaml is tested against it.
__version__ = "0.1.0"
__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    # Client on first use only: the operator and the trainer import this package for the
    # contract and need none of the client's modules.
    if name == "Client":
        from kubetune_api.client import Client

        return Client
    raise AttributeError(f"module 'kubetune_api' has no attribute {name!r}")
