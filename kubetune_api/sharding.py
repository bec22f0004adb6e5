"""FSDP and DeepSpeed with object-store outputs: what works, and the two things refused.

With DeepSpeed ZeRO, or FSDP with a sharded (or local) state dict, every training
process writes its own part of each checkpoint. For an object-store output each process
stages its files in a local folder of its own; the trainer uploads every process's files
and the checkpoint's trainer_state.json last, once all of them are in, and every process
of a resumed run downloads the whole checkpoint (see docs/distributed.md). Two things
need the other processes' files on local disk and cannot work that way:

* `load_best_model_at_end` with FSDP or DeepSpeed: at the end every process reloads "the
  best checkpoint" itself, from its own staging folder, which holds only its own files;
* DeepSpeed ZeRO stage 3 without `stage3_gather_16bit_weights_on_model_save: true`: the
  final model is saved as one ZeRO file per process instead of one model, and only
  global rank 0's files are published.

`sharded_checkpoint_problem` is a pure function of the spec (no torch): the spec
validation calls it with the final output URI (after the default output is filled in)
and `launch_command.training_processes(gpus, nodes)`; the trainer's preflight calls it
again with the output it was given and its world size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune_api.uris import OBJECT_STORE_SCHEMES, uri_scheme


def _zero_stage_3(deepspeed: Any) -> Mapping[str, Any] | None:
    """The zero_optimization section of an inline DeepSpeed config at stage 3, else None.

    A config given as a file path lives in the image and cannot be read here.
    """
    if not isinstance(deepspeed, Mapping):
        return None
    zero = deepspeed.get("zero_optimization")
    return zero if isinstance(zero, Mapping) and str(zero.get("stage")) == "3" else None


def sharded_checkpoint_problem(training_args: Mapping[str, Any], output_uri: str, processes: int) -> str | None:
    """Why these trainingArgs cannot run with this output on `processes` processes, or None.

    The message names the field as written in the FineTuneJob and the ways out.
    """
    if processes <= 1 or uri_scheme(output_uri) not in OBJECT_STORE_SCHEMES:
        return None
    engine = "deepspeed" if training_args.get("deepspeed") else "fsdp" if training_args.get("fsdp") else None
    if engine is None:
        return None
    if training_args.get("load_best_model_at_end"):
        return (
            f"spec.trainingArgs.load_best_model_at_end: with spec.trainingArgs.{engine} and an object-store "
            f"output ({output_uri}), each of the {processes} training processes would reload the best checkpoint "
            "from its own local staging folder, which holds only the files that process wrote; drop "
            "load_best_model_at_end, or use a pvc:// output on a ReadWriteMany claim"
        )
    zero = _zero_stage_3(training_args.get("deepspeed"))
    if zero is not None and zero.get("stage3_gather_16bit_weights_on_model_save") is not True:
        return (
            "spec.trainingArgs.deepspeed.zero_optimization.stage3_gather_16bit_weights_on_model_save: without "
            "it, ZeRO stage 3 saves the final model as one shard per process instead of one model, and with an "
            f"object-store output ({output_uri}) only rank 0's shard would be published; set it to true, or "
            "use a pvc:// output on a ReadWriteMany claim"
        )
    return None
