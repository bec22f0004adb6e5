"""GPU defaults: each one reaches the Trainer on a GPU, the user's value wins, and a CPU run is the seed's.

No GPU is needed: the tests hand HFTrainer a GPU's `DeviceCapabilities`. A CPU machine
cannot build every GPU setting into a real TrainingArguments (transformers refuses tf32
without an Ampere GPU, and the Trainer imports liger-kernel for use_liger_kernel), so
those two are checked in the arguments HFTrainer hands to TrainingArguments; bf16, the
fused optimizer, checkpointing and the attention are checked on the real Trainer and model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_models import TinyModels
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from kubetune_api.training import TrainingSpec
from kubetune_trainer import HFTrainer, hftrainer
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.gpu_defaults import (
    CPU_ONLY,
    DeviceCapabilities,
    RunFacts,
    attention_default,
    kbit_checkpointing_kwargs,
    training_defaults,
)
from kubetune_trainer.peft_config import ENV_QUANTIZE_ON_CPU
from kubetune_trainer.runner import run_training
from kubetune_trainer.training_args import build_training_args, defaults

H100 = DeviceCapabilities(
    cuda=True, bf16=True, compute_capability=(9, 0), flash_attn=True, liger_model_types=frozenset({"llama", "qwen2"})
)
T4 = DeviceCapabilities(cuda=True, bf16=False, compute_capability=(7, 5))
# What a CPU-only TrainingArguments can take of a GPU's defaults: bf16 and the fused optimizer.
CPU_BUILDABLE = DeviceCapabilities(cuda=True, bf16=True, compute_capability=(7, 5))
LLAMA_SFT = RunFacts("language-generation", "llama", quantized=False, adapter=False)
QLORA = RunFacts("language-generation", "llama", quantized=True, adapter=True)
TEXTS = [{"text": text} for text in ["the cat sat on the mat", "the dog ran in the park", "my puppy barks"] * 4]
NON_REENTRANT = {"use_reentrant": False}


# --- on a CPU nothing changes ---


def test_cpu_defaults_are_the_seeds() -> None:
    assert defaults() == {
        "output_dir": "",
        "save_strategy": "no",
        "report_to": "none",
        "log_level": "warning",
        "train_sampling_strategy": "group_by_length",
        "use_cpu": True,
    }
    assert training_defaults({}, CPU_ONLY, QLORA) == {}


def test_a_cpu_run_trains_with_the_seeds_arguments_and_the_models_attention(tiny_models: TinyModels) -> None:
    args: dict[str, Any] = {"max_steps": 2, "learning_rate": 1e-3}
    trainer = HFTrainer()  # this machine's own capabilities: no GPU
    model, _ = trainer(str(tiny_models.llama), TEXTS, task="language-generation", **args)
    assert trainer.gpu_defaults == {}
    assert trainer.trainer is not None
    assert trainer.trainer.args.to_dict() == build_training_args(args).to_dict()
    fresh = AutoModelForCausalLM.from_pretrained(tiny_models.llama)
    assert model.config._attn_implementation == fresh.config._attn_implementation == "sdpa"


def test_use_cpu_on_a_gpu_machine_gets_no_gpu_defaults() -> None:
    assert training_defaults({"use_cpu": True}, H100, QLORA) == {}


# --- each default, and the user's value over it ---


@pytest.mark.parametrize(
    ("caps", "args", "expected"),
    [
        (H100, {}, True),
        (H100, {"bf16": False}, None),  # the user's off stays off
        (H100, {"fp16": True}, None),  # fp16 asked for: no bf16 on top
        (T4, {}, None),  # no native bf16: and no fp16 either (it needs loss scaling)
    ],
)
def test_bf16_where_the_gpu_has_it(caps: DeviceCapabilities, args: dict[str, Any], expected: bool | None) -> None:
    updates = training_defaults(args, caps, LLAMA_SFT)
    assert updates.get("bf16") is expected
    assert "fp16" not in updates


@pytest.mark.parametrize(
    ("caps", "args", "expected"),
    [(H100, {}, True), (H100, {"tf32": False}, None), (T4, {}, None)],
)
def test_tf32_on_ampere_or_newer(caps: DeviceCapabilities, args: dict[str, Any], expected: bool | None) -> None:
    assert training_defaults(args, caps, LLAMA_SFT).get("tf32") is expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [({}, "adamw_torch_fused"), ({"optim": "paged_adamw_8bit"}, None), ({"optim": "adamw_torch"}, None)],
)
def test_fused_adamw_unless_an_optimizer_is_chosen(args: dict[str, Any], expected: str | None) -> None:
    assert training_defaults(args, T4, LLAMA_SFT).get("optim") == expected


@pytest.mark.parametrize(
    ("run", "args", "expected"),
    [
        (QLORA, {}, {"activation_checkpointing": True, "activation_checkpointing_kwargs": NON_REENTRANT}),
        (LLAMA_SFT, {}, {}),  # not quantized: no checkpointing of our own
        (QLORA, {"gradient_checkpointing": False}, {}),  # the user's off, under the old name
        # Turned on by the user without kwargs, or with kwargs that do not say: non-reentrant.
        (LLAMA_SFT, {"gradient_checkpointing": True}, {"activation_checkpointing_kwargs": NON_REENTRANT}),
        (
            LLAMA_SFT,
            {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"every_n_layers": 2}},
            {"gradient_checkpointing_kwargs": {"every_n_layers": 2, "use_reentrant": False}},
        ),
        (QLORA, {"activation_checkpointing_kwargs": {"use_reentrant": True}}, {"activation_checkpointing": True}),
    ],
)
def test_checkpointing_for_quantized_lora(run: RunFacts, args: dict[str, Any], expected: dict[str, Any]) -> None:
    updates = training_defaults(args, H100, run)
    checkpointing = {key: value for key, value in updates.items() if "checkpointing" in key}
    assert checkpointing == expected


def test_a_cpu_run_that_checkpoints_keeps_its_arguments_as_given() -> None:
    # transformers' own default for empty kwargs is already non-reentrant; a CPU run gets no
    # "GPU default" recorded for it.
    assert training_defaults({"gradient_checkpointing": True}, CPU_ONLY, LLAMA_SFT) == {}
    assert training_defaults({"gradient_checkpointing": True}, H100, LLAMA_SFT)["activation_checkpointing_kwargs"] == (
        NON_REENTRANT
    )


def test_kbit_preparation_gets_what_torch_checkpoint_takes() -> None:
    assert kbit_checkpointing_kwargs(None) == NON_REENTRANT
    assert kbit_checkpointing_kwargs({"every_n_layers": 2, "offload": True, "preserve_rng_state": False}) == {
        "preserve_rng_state": False,
        "use_reentrant": False,
    }
    assert kbit_checkpointing_kwargs({"use_reentrant": True}) == {"use_reentrant": True}


@pytest.mark.parametrize(
    ("caps", "run", "args", "expected"),
    [
        (H100, LLAMA_SFT, {}, True),
        (H100, LLAMA_SFT, {"use_liger_kernel": False}, None),
        (H100, RunFacts("language-generation", "gpt2", False, False), {}, None),  # a type Liger does not patch
        (H100, RunFacts("text-classification", "llama", False, False), {}, None),  # not a causal LM
        (T4, LLAMA_SFT, {}, None),  # liger-kernel not installed
    ],
)
def test_liger_for_the_model_types_it_patches(
    caps: DeviceCapabilities, run: RunFacts, args: dict[str, Any], expected: bool | None
) -> None:
    assert training_defaults(args, caps, run).get("use_liger_kernel") is expected


# --- attention ---


def _llama_config() -> LlamaConfig:
    return LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)


def _llama() -> LlamaForCausalLM:
    return LlamaForCausalLM(_llama_config())


class NoSdpaLlama(LlamaForCausalLM):
    _supports_sdpa = False
    _supports_flash_attn = False


@pytest.mark.parametrize(
    ("caps", "half", "expected"),
    [
        (H100, True, "flash_attention_2"),
        (H100, False, "sdpa"),  # flash-attn takes half precision only
        (DeviceCapabilities(cuda=True, bf16=True, compute_capability=(9, 0)), True, "sdpa"),  # no flash-attn
        (DeviceCapabilities(cuda=True, compute_capability=(7, 5), flash_attn=True), True, "sdpa"),  # pre-Ampere
        (CPU_ONLY, True, None),  # transformers' own choice
    ],
)
def test_attention_default(caps: DeviceCapabilities, half: bool, expected: str | None) -> None:
    assert attention_default(_llama(), caps, half) == expected


def test_a_model_without_sdpa_or_flash_keeps_its_own_attention() -> None:
    model = NoSdpaLlama(_llama_config())
    assert attention_default(model, H100, True) is None


def test_the_users_attention_reaches_the_model(tiny_models: TinyModels) -> None:
    trainer = HFTrainer(capabilities=H100)
    # The user's eager wins over flash_attention_2 (tf32 and Liger, which this CPU cannot run, are turned off).
    model, _ = trainer(
        str(tiny_models.llama),
        TEXTS,
        task="language-generation",
        attn_implementation="eager",
        max_steps=1,
        tf32=False,
        use_liger_kernel=False,
    )
    assert model.config._attn_implementation == "eager"
    assert "attn_implementation" not in trainer.gpu_defaults


def test_an_attention_the_model_cannot_run_is_a_config_error(tiny_models: TinyModels) -> None:
    with pytest.raises(ConfigError, match="attn_implementation='flash_attention_2'"):
        HFTrainer()(str(tiny_models.llama), TEXTS, task="language-generation", attn_implementation="flash_attention_2")


# --- into the real Trainer ---


def test_bf16_and_fused_adamw_reach_the_trainer_and_the_user_wins(tiny_models: TinyModels) -> None:
    trainer = HFTrainer(capabilities=CPU_BUILDABLE)
    trainer(str(tiny_models.llama), TEXTS, task="language-generation", max_steps=1)
    assert trainer.trainer is not None
    args = trainer.trainer.args
    assert args.bf16 is True and args.optim == "adamw_torch_fused"
    assert trainer.gpu_defaults == {"bf16": True, "optim": "adamw_torch_fused"}

    trainer(str(tiny_models.llama), TEXTS, task="language-generation", max_steps=1, bf16=False, optim="adamw_torch")
    assert trainer.trainer is not None
    assert trainer.trainer.args.bf16 is False and trainer.trainer.args.optim == "adamw_torch"
    assert trainer.gpu_defaults == {}


def test_quantized_lora_trains_with_non_reentrant_checkpointing(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_QUANTIZE_ON_CPU, "1")  # real 4-bit layers on this CPU
    trainer = HFTrainer(capabilities=DeviceCapabilities(cuda=True, compute_capability=(7, 5)))
    model, _ = trainer(str(tiny_models.llama), TEXTS, task="language-generation", quantize=True, lora=True, max_steps=2)
    assert trainer.quantized is True and trainer.trainer is not None
    args = trainer.trainer.args
    assert args.activation_checkpointing is True and args.activation_checkpointing_kwargs == NON_REENTRANT
    # What the layers really run: torch's non-reentrant checkpoint.
    checkpointed = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    assert checkpointed and all(m._gradient_checkpointing_func.keywords == NON_REENTRANT for m in checkpointed)

    trainer(
        str(tiny_models.llama),
        TEXTS,
        task="language-generation",
        quantize=True,
        lora=True,
        max_steps=1,
        gradient_checkpointing=False,
    )
    assert trainer.trainer is not None and trainer.trainer.args.activation_checkpointing is False


def test_tf32_and_liger_are_handed_to_training_arguments(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[dict[str, Any]] = []

    def recording(updates: dict[str, Any]) -> Any:
        handed.append(dict(updates))
        # This CPU cannot take these two into a real TrainingArguments: the rest is built as usual.
        return build_training_args({k: v for k, v in updates.items() if k not in ("tf32", "use_liger_kernel")})

    monkeypatch.setattr(hftrainer, "build_training_args", recording)
    caps = DeviceCapabilities(cuda=True, compute_capability=(8, 0), liger_model_types=frozenset({"llama"}))
    trainer = HFTrainer(capabilities=caps)
    trainer(str(tiny_models.llama), TEXTS, task="language-generation", max_steps=1)
    assert handed[-1]["tf32"] is True and handed[-1]["use_liger_kernel"] is True
    assert {"tf32", "use_liger_kernel"} <= set(trainer.gpu_defaults)

    handed.clear()
    trainer(str(tiny_models.llama), TEXTS, task="language-generation", max_steps=1, tf32=False, use_liger_kernel=False)
    assert handed[-1]["tf32"] is False and handed[-1]["use_liger_kernel"] is False


def test_the_defaults_are_logged_once(tiny_models: TinyModels, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="kubetune_trainer.hftrainer"):
        HFTrainer(capabilities=CPU_BUILDABLE)(str(tiny_models.llama), TEXTS, task="language-generation", max_steps=1)
    lines = [record.getMessage() for record in caplog.records if "GPU defaults applied" in record.getMessage()]
    assert lines == [
        "GPU defaults applied: bf16=True, optim='adamw_torch_fused' (set any of them in trainingArgs, "
        "or spec.attnImplementation, to choose otherwise; see docs/gpu.md)"
    ]


# --- through the runner: the spec field in, kubetune.json out ---


def _spec(base: Path, data: dict[str, str], output: Path, **fields: Any) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {"base": {"model": str(base)}, "data": data, "trainingArgs": {"max_steps": 2}, "output": {"uri": str(output)}}
        | fields
    )


def test_kubetune_json_records_the_gpu_defaults(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hftrainer, "device_capabilities", lambda: CPU_BUILDABLE)
    result = run_training(_spec(tiny_models.bert, data, tmp_path / "gpu"), job_name="team/gpu")
    assert result.outcome == "Succeeded", result.message
    meta = json.loads((tmp_path / "gpu" / "kubetune.json").read_text())
    assert meta["gpuDefaults"] == {"bf16": True, "optim": "adamw_torch_fused"}

    monkeypatch.setattr(hftrainer, "device_capabilities", lambda: CPU_ONLY)
    result = run_training(_spec(tiny_models.bert, data, tmp_path / "cpu"), job_name="team/cpu")
    assert result.outcome == "Succeeded", result.message
    assert json.loads((tmp_path / "cpu" / "kubetune.json").read_text())["gpuDefaults"] == {}


def test_spec_attention_reaches_the_trainer(tiny_models: TinyModels, data: dict[str, str], tmp_path: Path) -> None:
    # flash-attn is not installed here: the spec's choice is refused as the user's, not dropped as a default's.
    spec = _spec(tiny_models.bert, data, tmp_path / "out", attnImplementation="flash_attention_2")
    result = run_training(spec, job_name="team/flash")
    assert (result.outcome, result.reason) == ("Failed", "InvalidConfig")
    assert "attn_implementation='flash_attention_2'" in (result.message or "")
