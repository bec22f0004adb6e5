"""The final save after FSDP training with a sharded state dict writes one model.

No FSDP on CPU (accelerate enables it on GPUs only), so the Trainer is a stand-in here;
the plugin is accelerate's real one, and the check is transformers 5's own: its
`save_model` writes a model under FSDP only when "FULL_STATE_DICT" is in the plugin's
state dict type (huggingface/transformers#30491).
"""

from __future__ import annotations

from types import SimpleNamespace

from accelerate.utils import FullyShardedDataParallelPlugin

from kubetune_trainer.final_save import save_final_model


class TrainerStandIn:
    """Records what Trainer.save_model would see, and that the state was saved after it."""

    def __init__(self, plugin: FullyShardedDataParallelPlugin | None) -> None:
        self.is_fsdp_enabled = plugin is not None
        self.accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin))
        self.calls: list[str] = []

    def save_model(self) -> None:
        plugin = self.accelerator.state.fsdp_plugin
        writes_a_model = plugin is None or "FULL_STATE_DICT" in str(plugin.state_dict_type)
        self.calls.append("save_model: writes the model" if writes_a_model else "save_model: writes nothing")

    def save_state(self) -> None:
        self.calls.append("save_state")


def test_a_sharded_fsdp_run_still_saves_one_model() -> None:
    plugin = FullyShardedDataParallelPlugin(state_dict_type="SHARDED_STATE_DICT")
    trainer = TrainerStandIn(plugin)
    save_final_model(trainer)  # type: ignore[arg-type]
    assert trainer.calls == ["save_model: writes the model", "save_state"]


def test_without_fsdp_nothing_is_switched() -> None:
    trainer = TrainerStandIn(None)
    save_final_model(trainer)  # type: ignore[arg-type]
    assert trainer.calls == ["save_model: writes the model", "save_state"]
