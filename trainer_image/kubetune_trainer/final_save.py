"""Saving the trained model at the end: on every process, as one model even after sharded training.

`Trainer.save_model` must run on every process: with FSDP or DeepSpeed ZeRO-3 it first
gathers the weights from all ranks (a collective), and writes on the main process only.
Called on rank 0 alone it would wait forever for the others.

With FSDP and a sharded state dict (`fsdp_config.state_dict_type: SHARDED_STATE_DICT`,
right for fast checkpoints of big models), transformers 5's `save_model` writes nothing
at all (huggingface/transformers#30491), so the run would publish an output without a
model. The state dict type is switched to FULL_STATE_DICT for this last save, as the
transformers FSDP guide does: checkpoints stay sharded, the final model is one model
that `from_pretrained` loads.
"""

from __future__ import annotations

from transformers import Trainer

FULL_STATE_DICT = "FULL_STATE_DICT"


def save_final_model(trainer: Trainer) -> None:
    """Save the model (or adapter) and the Trainer state into args.output_dir; every process calls it."""
    if trainer.is_fsdp_enabled:
        plugin = trainer.accelerator.state.fsdp_plugin
        if FULL_STATE_DICT not in str(plugin.state_dict_type):
            plugin.set_state_dict_type(FULL_STATE_DICT)
    trainer.save_model()
    trainer.save_state()  # trainer_state.json: the main process only (Trainer checks)
