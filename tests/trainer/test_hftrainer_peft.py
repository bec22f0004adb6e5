"""LoRA adapters, quantization (skipped without a GPU, forced on CPU for real), resume, callbacks."""

from __future__ import annotations

from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from peft import PeftModel
from tiny_models import TinyModels
from toy_data import animals
from transformers import AutoModelForSequenceClassification, TrainerCallback

from kubetune_trainer import HFTrainer
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.peft_config import ENV_QUANTIZE_ON_CPU

TEXTS = [{"text": text} for text in ["the cat sat on the mat", "the dog ran in the park", "my puppy barks"] * 4]


def lora_b_moved(model: torch.nn.Module) -> bool:
    """LoRA B matrices start at zero: any non-zero value means the adapter was trained."""
    weights = [param for name, param in model.named_parameters() if "lora_B" in name]
    return bool(weights) and any(bool(weight.abs().sum() > 0) for weight in weights)


def test_lora_classifier_saves_only_the_adapter(tiny_models: TinyModels, tmp_path: Path) -> None:
    rows = [{"text": text, "label": label} for text, label in animals(32)]
    trainer = HFTrainer()
    model, tokenizer = trainer(str(tiny_models.bert), rows, lora=True, num_train_epochs=2, output_dir=str(tmp_path))
    assert trainer.adapter is True and trainer.quantized is False
    assert isinstance(model, PeftModel) and lora_b_moved(model)
    saved = {path.name for path in tmp_path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= saved
    assert "model.safetensors" not in saved

    # The adapter (with its trained classifier head) reloads onto the base and gives the same outputs.
    base = AutoModelForSequenceClassification.from_pretrained(tiny_models.bert, num_labels=2)
    reloaded = PeftModel.from_pretrained(base, tmp_path).eval()
    encoded = tokenizer(["my kitten purrs"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**encoded).logits, reloaded(**encoded).logits, atol=1e-5)


def test_quantize_without_gpu_is_skipped_with_warning(tiny_models: TinyModels, no_quantize_on_cpu: None) -> None:
    trainer = HFTrainer()
    model, _ = trainer(str(tiny_models.llama), TEXTS, task="language-generation", quantize=True, lora=True, max_steps=2)
    assert trainer.quantized is False and trainer.adapter is True
    assert any("quantization skipped" in warning for warning in trainer.warnings)
    assert not any(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())


def test_quantize_4bit_and_lora_for_real_on_cpu(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_QUANTIZE_ON_CPU, "1")
    trainer = HFTrainer()
    model, _ = trainer(
        str(tiny_models.llama),
        TEXTS,
        task="language-generation",
        quantize=True,
        lora=True,
        num_train_epochs=2,
        learning_rate=1e-3,
        output_dir=str(tmp_path),
    )
    assert trainer.quantized is True and trainer.adapter is True and trainer.warnings == []
    linear4 = [module for module in model.modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert linear4 and linear4[0].weight.quant_type == "nf4"
    assert lora_b_moved(model)
    assert trainer.metrics["train_loss"] > 0
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_quantize_8bit_dict_and_lora_dict_on_gpt2(tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_QUANTIZE_ON_CPU, "1")
    trainer = HFTrainer()
    model, _ = trainer(
        str(tiny_models.gpt2),
        TEXTS,
        task="language-generation",
        quantize={"load_in_8bit": True},
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]},
        max_steps=3,
        learning_rate=1e-3,
    )
    assert trainer.quantized is True
    assert any(isinstance(module, bnb.nn.Linear8bitLt) for module in model.modules())
    assert lora_b_moved(model)
    assert model.peft_config["default"].r == 4


def test_quantize_needs_lora_and_token_detection_refuses_lora(tiny_models: TinyModels) -> None:
    with pytest.raises(ConfigError, match="quantize needs lora"):
        HFTrainer()(str(tiny_models.llama), TEXTS, task="language-generation", quantize=True)
    with pytest.raises(ConfigError, match="lora is not supported with task token-detection"):
        HFTrainer()(str(tiny_models.electra), TEXTS, task="token-detection", lora=True)


class StepCounter(TrainerCallback):
    """Counts optimizer steps and logging events of one run."""

    def __init__(self) -> None:
        self.steps = 0
        self.logs: list[dict[str, float]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_resume_from_checkpoint_and_callbacks(tiny_models: TinyModels, tmp_path: Path) -> None:
    rows = [{"text": text, "label": label} for text, label in animals(32)]
    common = {"output_dir": str(tmp_path), "save_strategy": "steps", "save_steps": 2, "per_device_train_batch_size": 8}
    first = StepCounter()
    HFTrainer()(str(tiny_models.bert), rows, max_steps=4, callbacks=[first], logging_steps=1, **common)
    assert first.steps == 4 and any("loss" in log for log in first.logs)
    assert (tmp_path / "checkpoint-4").is_dir()

    resumed = StepCounter()
    trainer = HFTrainer()
    trainer(str(tiny_models.bert), rows, max_steps=6, checkpoint=True, callbacks=[resumed], **common)
    assert resumed.steps == 2  # picked up at step 4, not from scratch
    assert trainer.trainer is not None and trainer.trainer.state.global_step == 6

    by_path = StepCounter()
    HFTrainer()(
        str(tiny_models.bert),
        rows,
        max_steps=5,
        checkpoint=str(tmp_path / "checkpoint-4"),
        callbacks=[by_path],
        **common,
    )
    assert by_path.steps == 1


def test_resume_without_checkpoint_is_config_error(tiny_models: TinyModels, tmp_path: Path) -> None:
    rows = [{"text": "a cat", "label": 0}, {"text": "a dog", "label": 1}]
    with pytest.raises(ConfigError, match="has none"):
        HFTrainer()(str(tiny_models.bert), rows, checkpoint=True, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="is not a folder"):
        HFTrainer()(str(tiny_models.bert), rows, checkpoint=str(tmp_path / "checkpoint-9"))
