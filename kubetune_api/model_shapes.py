"""A model's parameter tensors, counted from its `config.json` alone (no weights, no torch).

`model_shape(config)` reads the fields every Hugging Face config has under one name or
another (hidden_size / n_embd / dim, num_hidden_layers / n_layer, ...) and lists the
model's parameters as groups of equal tensors: the linear layers of one block (what
bitsandbytes quantizes and LoRA targets, under the module names peft matches), the
embeddings, the norms and biases. The memory estimate (`kubetune_api.memory_estimate`)
works from that list.

Families: decoders with a gated MLP (Llama, Mistral, Qwen2/3, Gemma, Phi-3, OLMo, ...;
also any unknown `*ForCausalLM`), decoders with a plain MLP (GPT-2, GPT-NeoX, OPT, Phi),
and encoders (BERT and its kin: MiniLM, RoBERTa, ELECTRA, DistilBERT, ...). Encoder-decoder
models (T5, BART) are not modelled: `ShapeError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["gated-decoder", "decoder", "encoder"]

GATED_DECODERS = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text"}
    | {"phi3", "olmo", "olmo2", "granite", "cohere", "deepseek_v2", "stablelm", "smollm3", "internlm2", "yi"}
)
PLAIN_DECODERS = frozenset({"gpt2", "gpt_neox", "opt", "phi", "gptj", "falcon", "bloom", "gpt_bigcode"})
ENCODERS = frozenset(
    {"bert", "roberta", "xlm-roberta", "electra", "camembert", "distilbert", "mpnet", "deberta", "deberta-v2"}
)
DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8}


class ShapeError(ValueError):
    """The config does not say enough to count the parameters (or is of a family not modelled)."""


@dataclass(frozen=True)
class Linear:
    """One linear layer of a block: `inputs` x `outputs` weights, under peft's module name."""

    name: str
    inputs: int
    outputs: int
    bias: bool = False
    copies: int = 1  # experts of a mixture-of-experts MLP

    @property
    def weights(self) -> int:
        return self.inputs * self.outputs * self.copies

    @property
    def biases(self) -> int:
        return self.outputs * self.copies if self.bias else 0


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs to know about a model, counted from its config."""

    model_type: str
    family: Family
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    linears: tuple[Linear, ...]  # one block's
    block_other: int  # one block's norms and other small tensors (not in `linears`)
    embeddings: int  # token, position and token-type embeddings, their norm
    final_norm: int
    tied: bool  # the LM head shares the token embeddings
    dtype_bytes: int  # what from_pretrained loads the weights as (transformers 5: the config's dtype)
    max_positions: int | None
    num_labels: int
    experts_per_token: int = 1

    @property
    def block_linear_weights(self) -> int:
        return sum(linear.weights for linear in self.linears)

    @property
    def block_params(self) -> int:
        return self.block_linear_weights + sum(linear.biases for linear in self.linears) + self.block_other

    @property
    def body_params(self) -> int:
        """Every parameter of the base model without a task head."""
        return self.embeddings + self.layers * self.block_params + self.final_norm

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def _first(config: Mapping[str, Any], *names: str) -> Any:
    return next((config[name] for name in names if config.get(name) is not None), None)


def _required_int(config: Mapping[str, Any], *names: str) -> int:
    value = _first(config, *names)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ShapeError(f"config.json has no {' / '.join(names)} (a positive whole number)")
    return value


def family_of(config: Mapping[str, Any]) -> Family:
    model_type = str(config.get("model_type") or "")
    if config.get("is_encoder_decoder"):
        raise ShapeError(f"{model_type or 'this'} is an encoder-decoder model: the estimate covers only one stack")
    if model_type in ENCODERS:
        return "encoder"
    if model_type in PLAIN_DECODERS:
        return "decoder"
    if model_type in GATED_DECODERS or any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or []):
        return "gated-decoder"
    raise ShapeError(f"model_type {model_type!r} is not one the estimate models")


def weights_dtype_bytes(config: Mapping[str, Any]) -> int:
    """Bytes per weight as loaded: transformers 5 loads with dtype="auto", the config's dtype."""
    name = str(_first(config, "dtype", "torch_dtype") or "float32").removeprefix("torch.")
    return DTYPE_BYTES.get(name, 4)


def model_shape(config: Mapping[str, Any]) -> ModelShape:
    """The parameter groups of the model a config describes; ShapeError when it cannot tell."""
    family = family_of(config)
    model_type = str(config.get("model_type") or "")
    hidden = _required_int(config, "hidden_size", "n_embd", "d_model", "dim")
    layers = _required_int(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    heads = _required_int(config, "num_attention_heads", "n_head", "num_heads", "n_heads")
    vocab = _required_int(config, "vocab_size")
    intermediate = _first(config, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim") or 4 * hidden
    kv_heads = _first(config, "num_key_value_heads", "num_kv_heads") or heads
    if config.get("multi_query"):
        kv_heads = 1
    head_dim = _first(config, "head_dim") or hidden // heads
    experts = _first(config, "num_local_experts", "num_experts") or 1
    labels = config.get("id2label")
    num_labels = len(labels) if isinstance(labels, Mapping) and labels else int(config.get("num_labels") or 2)
    max_positions = _first(config, "max_position_embeddings", "n_positions", "seq_length")
    shape: dict[str, Any] = dict(
        model_type=model_type,
        family=family,
        hidden=hidden,
        layers=layers,
        intermediate=int(intermediate),
        vocab=vocab,
        heads=heads,
        kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        dtype_bytes=weights_dtype_bytes(config),
        max_positions=int(max_positions) if max_positions else None,
        num_labels=num_labels,
    )
    q_dim, kv_dim, inter = heads * int(head_dim), int(kv_heads) * int(head_dim), int(intermediate)
    if family == "gated-decoder":
        bias = bool(config.get("attention_bias") or model_type in {"qwen2", "qwen2_moe"})
        linears = _gated_linears(model_type, hidden, q_dim, kv_dim, inter, bias, int(experts))
        # Llama's default is untied; Gemma's and small Qwens' configs say tied.
        tied = bool(config.get("tie_word_embeddings", False))
        return ModelShape(
            **shape,
            linears=linears,
            block_other=2 * hidden
            + (2 * int(head_dim) if model_type.startswith("qwen3") else 0)
            + (hidden * int(experts) if experts > 1 else 0),  # norms; a router per MoE block
            embeddings=vocab * hidden,
            final_norm=hidden,
            tied=tied,
            experts_per_token=int(_first(config, "num_experts_per_tok") or 1) if experts > 1 else 1,
        )
    if family == "decoder":
        linears = _plain_decoder_linears(model_type, hidden, inter)
        positions = hidden * int(max_positions or 0) if model_type in {"gpt2", "opt", "gpt_bigcode"} else 0
        return ModelShape(
            **shape,
            linears=linears,
            block_other=4 * hidden,  # two LayerNorms, weight and bias
            embeddings=vocab * hidden + positions,
            final_norm=2 * hidden,
            tied=bool(config.get("tie_word_embeddings", model_type != "gpt_neox")),
        )
    return _encoder(config, shape, hidden, inter)


def _gated_linears(
    model_type: str, hidden: int, q_dim: int, kv_dim: int, inter: int, bias: bool, experts: int
) -> tuple[Linear, ...]:
    if model_type == "phi3":  # fused projections
        return (
            Linear("qkv_proj", hidden, q_dim + 2 * kv_dim),
            Linear("o_proj", q_dim, hidden),
            Linear("gate_up_proj", hidden, 2 * inter),
            Linear("down_proj", inter, hidden),
        )
    attention = (
        Linear("q_proj", hidden, q_dim, bias),
        Linear("k_proj", hidden, kv_dim, bias),
        Linear("v_proj", hidden, kv_dim, bias),
        Linear("o_proj", q_dim, hidden),
    )
    if model_type == "mixtral":  # block_sparse_moe.experts.N.w1 (gate), w3 (up), w2 (down)
        return (
            *attention,
            Linear("w1", hidden, inter, copies=experts),
            Linear("w3", hidden, inter, copies=experts),
            Linear("w2", inter, hidden, copies=experts),
        )
    return (
        *attention,
        Linear("gate_proj", hidden, inter, copies=experts),
        Linear("up_proj", hidden, inter, copies=experts),
        Linear("down_proj", inter, hidden, copies=experts),
    )


def _plain_decoder_linears(model_type: str, hidden: int, inter: int) -> tuple[Linear, ...]:
    if model_type == "gpt2":  # Conv1D layers; attn.c_proj and mlp.c_proj share a name
        return (
            Linear("c_attn", hidden, 3 * hidden, True),
            Linear("c_proj", hidden, hidden, True),
            Linear("c_fc", hidden, inter, True),
            Linear("c_proj", inter, hidden, True),
        )
    if model_type == "gpt_neox":
        return (
            Linear("query_key_value", hidden, 3 * hidden, True),
            Linear("dense", hidden, hidden, True),
            Linear("dense_h_to_4h", hidden, inter, True),
            Linear("dense_4h_to_h", inter, hidden, True),
        )
    return (
        Linear("q_proj", hidden, hidden, True),
        Linear("k_proj", hidden, hidden, True),
        Linear("v_proj", hidden, hidden, True),
        Linear("out_proj" if model_type == "opt" else "dense", hidden, hidden, True),
        Linear("fc1", hidden, inter, True),
        Linear("fc2", inter, hidden, True),
    )


def _encoder(config: Mapping[str, Any], shape: dict[str, Any], hidden: int, inter: int) -> ModelShape:
    model_type = shape["model_type"]
    if model_type == "distilbert":
        names = ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2")
    else:  # BERT: attention.self.query/key/value, attention.output.dense, intermediate.dense, output.dense
        names = ("query", "key", "value", "dense", "dense", "dense")
    sizes = ((hidden, hidden),) * 4 + ((hidden, inter), (inter, hidden))
    linears = tuple(Linear(name, i, o, True) for name, (i, o) in zip(names, sizes, strict=True))
    embedding = int(config.get("embedding_size") or hidden)  # ELECTRA's small embeddings
    positions = int(shape["max_positions"] or 512)
    types = 0 if model_type == "distilbert" else int(config.get("type_vocab_size") or 2)
    embeddings = (shape["vocab"] + positions + types) * embedding + 2 * embedding
    if embedding != hidden:
        embeddings += embedding * hidden + hidden  # embeddings_project
    return ModelShape(
        **shape,
        linears=linears,
        block_other=4 * hidden,  # two LayerNorms, weight and bias
        embeddings=embeddings,
        final_norm=0,
        tied=True,  # the MLM decoder shares the word embeddings
    )
