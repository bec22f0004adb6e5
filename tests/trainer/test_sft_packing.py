"""Packing: rows share sequences without padding, and never attend to each other."""

from __future__ import annotations

import random
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from tiny_chat import chat_tokenizer
from tiny_models import TinyModels
from transformers import AutoModelForCausalLM, BloomConfig, GPT2Config, LlamaConfig, OPTConfig

from kubetune_trainer import HFTrainer
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.feature_plan import SFTOptions
from kubetune_trainer.packing import SEQ_LENGTHS, PackedCollator, pack, packing_problem
from kubetune_trainer.task_recipes import prepare


def rows_of_lengths(lengths: list[int], vocab: int = 100, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    ids = [[rng.randrange(5, vocab) for _ in range(length)] for length in lengths]
    return Dataset.from_dict({"input_ids": ids, "labels": [list(row) for row in ids]})


def test_packed_batch_has_no_padding_and_restarts_positions_per_row() -> None:
    rows = rows_of_lengths([6, 4, 5, 5, 10, 3, 7])  # fits exactly in bins of 10: 10 | 6+4 | 5+5 | 7+3
    packed = pack(rows, 10, None)
    assert len(packed) == 4
    batch = PackedCollator(pad_token_id=0)([packed[i] for i in range(len(packed))])
    assert tuple(batch["input_ids"].shape) == (4, 10)  # every token a real one
    assert "attention_mask" not in batch
    for row, lengths in zip(batch["position_ids"].tolist(), packed[SEQ_LENGTHS], strict=True):
        assert row == [position for length in lengths for position in range(length)]
    # No row learns to predict its first token from the row packed before it.
    starts = batch["position_ids"] == 0
    assert (batch["labels"][starts] == -100).all() and (batch["labels"][~starts] != -100).all()
    # Nothing is lost or cut: the same tokens, in bins.
    assert sorted(chain.from_iterable(rows["input_ids"])) == sorted(chain.from_iterable(packed["input_ids"]))


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


ANSWERS = ("red", "the cat is very red", "blue")
FORMAT_ROWS = {
    "text": [{"text": f"what color is the cat ? {answer}"} for answer in ANSWERS],
    "chat": [{"messages": [_user("what color is the cat ?"), _assistant(answer)]} for answer in ANSWERS],
    "prompt-completion": [{"prompt": "what color is the cat ?", "completion": f" {answer}"} for answer in ANSWERS],
}


@pytest.mark.parametrize("data_format", sorted(FORMAT_ROWS))
def test_every_format_packs_its_training_rows_and_evaluates_row_by_row(data_format: str) -> None:
    tokenizer = chat_tokenizer()
    data = Dataset.from_list(FORMAT_ROWS[data_format] * 8)
    prepared = prepare("language-generation", data, data, tokenizer, None, 32, sft=SFTOptions(packing=True))
    unpacked = prepare("language-generation", data, None, tokenizer, None, 32, sft=SFTOptions(packing=False))
    assert prepared.sft is not None and (prepared.sft.format, prepared.sft.batching) == (data_format, "packed")
    assert len(prepared.train) < len(data) and all(len(ids) <= 32 for ids in prepared.train["input_ids"])
    # The same rows, with the same labels, only packed together.
    assert sum(map(sum, prepared.train[SEQ_LENGTHS])) == sum(map(len, unpacked.train["input_ids"]))
    assert sorted(chain.from_iterable(prepared.train["labels"])) == sorted(
        chain.from_iterable(unpacked.train["labels"])
    )
    assert prepared.validation is not None and len(prepared.validation) == len(data)
    assert SEQ_LENGTHS not in prepared.validation.column_names


def test_packing_refuses_a_kv_cache(chat_llama: Path) -> None:
    rows = FORMAT_ROWS["chat"]
    with pytest.raises(ConfigError, match="packing needs use_cache off"):
        HFTrainer()(str(chat_llama), rows, task="language-generation", packing=True, use_cache=True)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("flatten", [False, True], ids=["packed-rows", "flattened"])
@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_a_rows_outputs_do_not_depend_on_what_it_is_packed_with(
    tiny_models: TinyModels, architecture: str, attention: str, flatten: bool
) -> None:
    model = AutoModelForCausalLM.from_pretrained(getattr(tiny_models, architecture), attn_implementation=attention)
    model.eval()
    rng = random.Random(1)
    rows = [[rng.randrange(5, 60) for _ in range(length)] for length in (9, 6, 12, 3)]
    # Two packed sequences: rows 0+1 and rows 2+3.
    examples = [
        {"input_ids": rows[0] + rows[1], "labels": rows[0] + rows[1], SEQ_LENGTHS: [9, 6]},
        {"input_ids": rows[2] + rows[3], "labels": rows[2] + rows[3], SEQ_LENGTHS: [12, 3]},
    ]
    batch = PackedCollator(pad_token_id=0, flatten=flatten)(examples)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        # With a KV cache transformers attends across packed rows: the Trainer keeps it off (use_cache=False).
        packed = model(**inputs, use_cache=False).logits
        alone = [model(torch.tensor([row])).logits[0] for row in rows]
        # The control: the same tokens concatenated without per-row positions do attend across rows.
        crossing = model(torch.tensor([rows[0] + rows[1]]), use_cache=False).logits[0, 9:]
    flat = packed.reshape(-1, packed.shape[-1])
    offsets = [0, 9, 15, 27] if flatten else [0, 9, 15, 15 + 12]
    for row, start, expected in zip(rows, offsets, alone, strict=True):
        assert torch.allclose(flat[start : start + len(row)], expected, atol=1e-5), (architecture, start)
    assert not torch.allclose(crossing, alone[1], atol=1e-3)


def _tiny_causal_lm(architecture: str, vocab: int = 64) -> Any:
    """A random causal LM of `architecture`, small enough to build in a test."""
    configs = {
        "llama": LlamaConfig(
            vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
        ),
        "gpt2": GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=64),
        "opt": OPTConfig(
            vocab_size=vocab,
            hidden_size=16,
            word_embed_proj_dim=16,
            ffn_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
        ),
        "bloom": BloomConfig(vocab_size=vocab, hidden_size=16, n_layer=2, n_head=2),
    }
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(configs[architecture])


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_packing_accepts_models_that_keep_packed_rows_apart(architecture: str) -> None:
    model = _tiny_causal_lm(architecture)
    model.train()
    PackedCollator(pad_token_id=0).bind(model)
    assert model.training  # the probe ran in eval mode and gave the model back as it was


@pytest.mark.parametrize("architecture", ["opt", "bloom"])
def test_packing_refuses_a_model_whose_packed_rows_see_each_other(architecture: str) -> None:
    # transformers 5.24 builds OPT's and Bloom's masks without the position ids: rows would cross.
    with pytest.raises(ConfigError, match=r"packing: \w+ForCausalLM .* mixes the rows .* set packing: false"):
        PackedCollator(pad_token_id=0).bind(_tiny_causal_lm(architecture))


def test_a_packed_run_on_such_a_model_fails_before_training() -> None:
    tokenizer = chat_tokenizer()
    model = _tiny_causal_lm("opt", vocab=len(tokenizer))
    with pytest.raises(ConfigError, match="packing: OPTForCausalLM"):
        HFTrainer()((model, tokenizer), FORMAT_ROWS["chat"] * 4, task="language-generation", packing=True)
    # Without packing the same model trains.
    HFTrainer()((model, tokenizer), FORMAT_ROWS["chat"] * 4, task="language-generation", packing=False, max_steps=1)


@pytest.mark.parametrize(("architecture", "apart"), [("llama", True), ("opt", False)])
def test_the_check_also_covers_the_flattened_batches_of_flash_attention(architecture: str, apart: bool) -> None:
    # On a GPU with flash-attn the collator flattens the batch; the check runs that same layout.
    problem = packing_problem(_tiny_causal_lm(architecture), PackedCollator(pad_token_id=0, flatten=True))
    assert (problem is None) is apart
