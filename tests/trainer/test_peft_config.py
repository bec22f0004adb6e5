"""quantize / lora normalisation: every accepted form, the CPU plan, and bad input."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, TaskType
from transformers import BitsAndBytesConfig

from kubetune_api.arguments import check_lora, check_quantize
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.peft_config import (
    DEFAULT_LORA,
    DEFAULT_QUANTIZE,
    ENV_QUANTIZE_ON_CPU,
    lora_config,
    lora_task_type,
    plan_quantization,
    quantization_config,
    quantize_on_cpu_forced,
)


@pytest.mark.parametrize("off", [None, False, {}])
def test_quantize_off(off: object) -> None:
    assert quantization_config(off) is None  # type: ignore[arg-type]


def test_quantize_true_is_4bit_nf4_double_quant_bfloat16() -> None:
    config = quantization_config(True)
    assert isinstance(config, BitsAndBytesConfig)
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype == torch.bfloat16


def test_quantize_dict_and_object() -> None:
    config = quantization_config({"load_in_8bit": True})
    assert config is not None and config.load_in_8bit and not config.load_in_4bit
    given = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4")
    assert quantization_config(given) is given


def test_quantize_whole_number_threshold_is_a_float() -> None:
    # JSON writes 6.0 as 6 (the API server does); BitsAndBytesConfig refuses an int threshold.
    config = quantization_config({"load_in_8bit": True, "llm_int8_threshold": 6})
    assert config is not None and config.llm_int8_threshold == 6.0
    assert isinstance(config.llm_int8_threshold, float)


def test_quantize_misspelt_key_names_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"load_in_4bits.*did you mean: load_in_4bit"):
        quantization_config({"load_in_4bits": True})


def test_quantize_wrong_type() -> None:
    with pytest.raises(ConfigError, match="quantize must be"):
        quantization_config("4bit")  # type: ignore[arg-type]


@pytest.mark.parametrize("off", [None, False, {}])
def test_lora_off(off: object) -> None:
    assert lora_config("text-classification", off) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task", "task_type"),
    [
        ("text-classification", TaskType.SEQ_CLS),
        ("language-generation", TaskType.CAUSAL_LM),
        ("language-modeling", TaskType.FEATURE_EXTRACTION),
        ("question-answering", TaskType.QUESTION_ANS),
        ("sequence-sequence", TaskType.SEQ_2_SEQ_LM),
        ("token-detection", TaskType.FEATURE_EXTRACTION),
    ],
)
def test_lora_true_defaults_and_task_type(task: str, task_type: TaskType) -> None:
    config = lora_config(task, True)
    assert isinstance(config, LoraConfig)
    assert (config.r, config.lora_alpha, config.lora_dropout, config.bias) == (16, 8, 0.05, "none")
    assert config.target_modules == "all-linear"
    assert config.task_type == task_type
    assert lora_task_type(task) == task_type


def test_lora_dict_keeps_user_values_and_is_not_modified() -> None:
    given = {"r": 4, "lora_alpha": 16, "target_modules": ["query", "value"]}
    config = lora_config("language-generation", given)
    assert config is not None and config.r == 4 and config.lora_alpha == 16
    assert set(config.target_modules) == {"query", "value"}
    assert config.task_type == TaskType.CAUSAL_LM
    assert "task_type" not in given  # the seed wrote task_type into the caller's dict

    explicit = lora_config("language-generation", {"r": 2, "task_type": "SEQ_CLS"})
    assert explicit is not None and explicit.task_type == "SEQ_CLS"


def test_lora_object_passes_through() -> None:
    given = LoraConfig(r=2, task_type=TaskType.SEQ_CLS)
    assert lora_config("language-generation", given) is given


def test_lora_misspelt_key() -> None:
    with pytest.raises(ConfigError, match=r"lora: unknown argument 'lora_alfa' \(did you mean: lora_alpha"):
        lora_config("text-classification", {"lora_alfa": 8})


def test_plan_without_gpu_skips_with_warning() -> None:
    plan = plan_quantization(quantization_config(True), cuda_available=False, force_cpu=False)
    assert plan.config is None
    assert plan.warning is not None and "quantization skipped" in plan.warning and ENV_QUANTIZE_ON_CPU in plan.warning


def test_plan_forced_on_cpu_uses_float32_compute_and_cpu_map() -> None:
    plan = plan_quantization(quantization_config(True), cuda_available=False, force_cpu=True)
    assert plan.config is not None and plan.warning is None
    assert plan.device_map == "cpu"
    assert plan.config.bnb_4bit_compute_dtype == torch.float32
    assert plan.config.bnb_4bit_quant_type == "nf4" and plan.config.bnb_4bit_use_double_quant


def test_plan_with_gpu_keeps_config() -> None:
    config = quantization_config(True)
    plan = plan_quantization(config, cuda_available=True, force_cpu=False)
    assert plan.config is config and plan.device_map is None and plan.warning is None
    assert plan_quantization(None, cuda_available=False).config is None


@pytest.mark.parametrize(("value", "forced"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_env_switch(monkeypatch: pytest.MonkeyPatch, value: str, forced: bool) -> None:
    monkeypatch.setenv(ENV_QUANTIZE_ON_CPU, value)
    assert quantize_on_cpu_forced() is forced


def test_the_seed_defaults_pass_the_catalogue() -> None:
    """What `true` expands to must be what the spec accepts when written out."""
    assert check_quantize(DEFAULT_QUANTIZE) == []
    assert check_lora(DEFAULT_LORA) == []
