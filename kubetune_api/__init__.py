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
  shared by `kubetune validate`, `kubetune run` and the operator.

`kubetune_operator` and `kubetune_trainer` both import from here and never from each other.
"""

# The one version source: pyproject.toml reads it, Chart.yaml is tested against it.
__version__ = "0.1.0"
__all__ = ["__version__"]
