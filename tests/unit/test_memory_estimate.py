"""The memory estimate against published figures and known parameter counts (no torch)."""

from __future__ import annotations

from typing import Any

import pytest
from published_models import FIGURES, GPT2, LLAMA2_7B, MINILM_L6, MISTRAL_7B, QWEN25_7B, Figure, spec

from kubetune_api.memory_estimate import EstimateError, MemoryEstimate, estimate_memory
from kubetune_api.model_shapes import model_shape
from kubetune_api.training import TrainingSpec


def estimate(config: dict[str, Any], **fields: Any) -> MemoryEstimate:
    return estimate_memory(config, TrainingSpec.model_validate(spec(**fields)))


@pytest.mark.parametrize("figure", FIGURES, ids=lambda figure: figure.name)
def test_within_the_published_band(figure: Figure) -> None:
    found = getattr(estimate_memory(figure.config, TrainingSpec.model_validate(figure.spec)), figure.part) / 1e9
    assert figure.low_gb <= found <= figure.high_gb, f"{figure.name}: {found:.2f} GB, published {figure.published_gb}"


@pytest.mark.parametrize(
    ("config", "count"),
    [
        (LLAMA2_7B, 6_738_415_616),  # untied LM head
        (MISTRAL_7B, 7_241_732_096),  # grouped-query attention
        (QWEN25_7B, 7_615_616_512),  # q/k/v biases
        (GPT2, 124_439_808),  # tied head, learned positions
    ],
)
def test_parameter_count_of_published_models(config: dict[str, Any], count: int) -> None:
    assert estimate(config).parameters == count


def test_encoder_classifier_counts_bert_with_pooler_and_head() -> None:
    found = estimate_memory(
        MINILM_L6,
        TrainingSpec.model_validate({"base": {"model": "m"}, "data": {"train": "t.csv"}}),
    )
    # all-MiniLM-L6-v2 as BertModel has 22,713,216 parameters; a 2-label classifier adds 770.
    assert found.parameters == found.trainable == 22_713_216 + 770
    assert found.weights == 4 * found.parameters  # float32 checkpoint, full fine-tuning


def test_nf4_with_double_quant_is_4_127_bits_per_weight() -> None:
    # QLoRA paper, section 3: double quantization cuts the constants from 0.5 to 0.127 bits.
    shape = model_shape(LLAMA2_7B)
    linears = shape.layers * shape.block_linear_weights
    rest = (shape.body_params - linears + shape.vocab * shape.hidden) * 2  # fp16 embeddings, norms, head
    for quantize, bits in ((True, 4.127), ({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, 4.5)):
        loaded = estimate(LLAMA2_7B, quantize=quantize, lora=True).loaded_weights
        assert (loaded - rest) * 8 / linears == pytest.approx(bits, abs=0.001)


def test_lora_on_q_and_v_trains_the_parameters_peft_reports() -> None:
    found = estimate(LLAMA2_7B, lora={"r": 8, "target_modules": ["q_proj", "v_proj"]})
    assert found.trainable == 4_194_304  # peft's print_trainable_parameters for Llama-2-7B, r 8
    assert found.gradients == 4 * found.trainable  # fp32 adapters
    assert found.optimizer == 8 * found.trainable  # AdamW: two fp32 moments


def test_peft_default_targets_when_lora_names_none() -> None:
    assert estimate(LLAMA2_7B, lora={"r": 8}).trainable == 4_194_304


def test_quantized_base_keeps_the_rest_in_fp32_for_training() -> None:
    found = estimate(LLAMA2_7B, quantize=True, lora=True)
    # peft's prepare_model_for_kbit_training casts the fp16 embeddings and head to fp32.
    assert found.weights - found.loaded_weights > 2 * 2 * 32000 * 4096 * 0.99


def test_each_knob_moves_the_estimate_the_right_way() -> None:
    base = estimate(LLAMA2_7B, lora=True, trainingArgs={"bf16": True, "per_device_train_batch_size": 4})
    checkpointed = estimate(
        LLAMA2_7B,
        lora=True,
        trainingArgs={"bf16": True, "per_device_train_batch_size": 4, "gradient_checkpointing": True},
    )
    assert checkpointed.activations < base.activations / 5
    longer = estimate(
        LLAMA2_7B, lora=True, maxLength=1024, trainingArgs={"bf16": True, "per_device_train_batch_size": 4}
    )
    assert longer.activations == pytest.approx(2 * base.activations, rel=0.01)
    eight_bit = estimate(LLAMA2_7B, trainingArgs={"bf16": True, "optim": "adamw_8bit"})
    full = estimate(LLAMA2_7B, trainingArgs={"bf16": True})
    assert eight_bit.optimizer * 2 == full.optimizer  # 1 B per moment instead of the fp16 weights' 2 B
    assert estimate(LLAMA2_7B, trainingArgs={"optim": "sgd"}).optimizer == 0
    assert estimate(LLAMA2_7B, quantize=True, lora=True).total < base.total


def test_logits_dominate_a_small_model_with_a_large_vocabulary() -> None:
    found = estimate(GPT2, trainingArgs={"per_device_train_batch_size": 8})
    logits = 8 * 512 * 50257 * (4 + 4)  # fp32 logits and their gradient
    assert found.activations > logits > found.weights


def test_unknown_optimizer_is_counted_as_adamw_and_said() -> None:
    found = estimate(LLAMA2_7B, lora=True, trainingArgs={"optim": "lomo"})
    assert found.optimizer == 8 * found.trainable
    assert any("lomo" in note for note in found.notes)


def test_describe_gives_the_total_and_the_parts() -> None:
    text = estimate(LLAMA2_7B, quantize=True, lora=True).describe()
    assert text.startswith("about 6.") and "GiB" in text
    for part in ("weights", "gradients", "optimizer", "activations", "CUDA"):
        assert part in text


@pytest.mark.parametrize(
    ("config", "fields", "says"),
    [
        ({"model_type": "t5", "d_model": 512, "is_encoder_decoder": True}, {}, "encoder-decoder"),
        ({"model_type": "llama", "hidden_size": 64}, {}, "num_hidden_layers"),
        ({"model_type": "mamba", "hidden_size": 64}, {}, "mamba"),
        (LLAMA2_7B, {"lora": {"target_modules": ["query"]}}, "matches no linear layer"),
    ],
)
def test_no_estimate_says_why(config: dict[str, Any], fields: dict[str, Any], says: str) -> None:
    with pytest.raises(EstimateError, match=says):
        estimate(config, **fields)
