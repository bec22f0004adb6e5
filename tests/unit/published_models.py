"""Published model configs (the config.json fields the estimate reads) and published memory
figures to check the estimate against; shared by tests/unit/test_memory_estimate.py and
bench/memory_estimate.py. Nothing here is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# meta-llama/Llama-2-7b-hf config.json
LLAMA2_7B: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
}
# Qwen/Qwen2.5-7B config.json
QWEN25_7B: dict[str, Any] = {
    "model_type": "qwen2",
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
# mistralai/Mistral-7B-v0.1 config.json (grouped-query attention: 8 KV heads)
MISTRAL_7B: dict[str, Any] = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
# sentence-transformers/all-MiniLM-L6-v2 config.json (a BERT)
MINILM_L6: dict[str, Any] = {
    "model_type": "bert",
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "torch_dtype": "float32",
}
# openai-community/gpt2 config.json
GPT2: dict[str, Any] = {
    "model_type": "gpt2",
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "vocab_size": 50257,
    "n_positions": 1024,
}

# LLaMA-Factory trains with gradient checkpointing on by default; its table gives no batch
# size or length: batch 1 at 512 tokens, as the QLoRA "6-10 GB at seq 512" figure says.
RECIPE = {"bf16": True, "per_device_train_batch_size": 1, "gradient_checkpointing": True}


def spec(**fields: Any) -> dict[str, Any]:
    """A language-generation spec at 512 tokens with RECIPE, plus `fields`."""
    return {
        "task": "language-generation",
        "base": {"model": "org/model"},
        "data": {"train": "train.jsonl"},
        "maxLength": 512,
        "trainingArgs": dict(RECIPE),
        **fields,
    }


@dataclass(frozen=True)
class Figure:
    """A published figure: what it measured, the band it allows, and where it is from."""

    name: str
    config: dict[str, Any]
    spec: dict[str, Any]
    part: str  # "total" or "loaded_weights"
    published_gb: float  # 1e9 bytes
    low_gb: float
    high_gb: float
    source: str


FIGURES = (
    Figure(
        "Qwen2.5-7B NF4 weights as loaded",
        QWEN25_7B,
        spec(quantize=True, lora=True),
        "loaded_weights",
        5.44,
        5.44 * 0.95,
        5.44 * 1.05,
        # model.get_memory_footprint() after loading in 4-bit; it counts the packed 4-bit
        # weights (0.5 B) and the 16-bit embeddings and LM head, not the quantization constants.
        "dev.to/sumanpro 'QLoRA: fine-tuning a 7B model on a 16GB GPU (it shrank to 5.4GB)'",
    ),
    Figure(
        "Llama-2-7B QLoRA training, seq 512",
        LLAMA2_7B,
        spec(quantize=True, lora=True),
        "total",
        8.0,
        6.0,
        10.0,
        "QLoRA 7B fine-tuning reported in 6-10 GB at 512 tokens (kubetune issue)",
    ),
    Figure(
        "7B QLoRA 4-bit (LLaMA-Factory)",
        LLAMA2_7B,
        spec(quantize=True, lora=True),
        "total",
        6.0,
        6.0 * 0.8,
        6.0 * 1.2,
        "LLaMA-Factory README, hardware requirement table: QLoRA 4 bits, 7B: 6 GB",
    ),
    Figure(
        "7B LoRA 16-bit (LLaMA-Factory)",
        LLAMA2_7B,
        spec(lora=True),
        "total",
        16.0,
        16.0 * 0.8,
        16.0 * 1.2,
        "LLaMA-Factory README, hardware requirement table: Freeze/LoRA 16 bits, 7B: 16 GB",
    ),
    Figure(
        "7B full, bf16 mixed precision on fp32 weights (LLaMA-Factory)",
        {**LLAMA2_7B, "torch_dtype": "float32"},
        spec(),
        "total",
        120.0,
        120.0 * 0.8,
        120.0 * 1.2,
        "LLaMA-Factory README, hardware requirement table: Full (bf16 or fp16) 32 bits, 7B: 120 GB",
    ),
    Figure(
        "7B full, pure bf16 (LLaMA-Factory)",
        {**LLAMA2_7B, "torch_dtype": "bfloat16"},
        spec(),
        "total",
        60.0,
        60.0 * 0.8,
        60.0 * 1.2,
        "LLaMA-Factory README, hardware requirement table: Full (pure_bf16) 16 bits, 7B: 60 GB",
    ),
)
