"""Chat fine-tuning end to end on a tiny Llama, judged by what the trained model does."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bitsandbytes as bnb
import pytest
import torch
from tiny_chat import CHAT_TEMPLATE, THINGS, answer, build_chat_llama, chat_rows, question
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from kubetune_trainer import HFTrainer
from kubetune_trainer.chat_masks import make_renderer
from kubetune_trainer.peft_config import ENV_QUANTIZE_ON_CPU

TRAIN = {"task": "language-generation", "maxlength": 64, "learning_rate": 3e-3, "num_train_epochs": 12}


def reply(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """Greedy generation from the rendered conversation and its generation prompt."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        generated = model.generate(**encoded, max_new_tokens=8, do_sample=False)
    return tokenizer.decode(generated[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)


def turn_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, role: str) -> float:
    """Mean loss on the tokens of the `role` turns of one-question conversations about every thing."""
    renderer = make_renderer(tokenizer, CHAT_TEMPLATE)
    losses = []
    for thing in THINGS:
        messages = [{"role": "user", "content": question(thing)}, {"role": "assistant", "content": answer(thing)}]
        rendered = renderer.encode(messages, [message["role"] == role for message in messages])
        ids = torch.tensor([rendered.input_ids])
        labels = torch.where(torch.tensor([rendered.mask]) == 1, ids, -100)
        with torch.no_grad():
            losses.append(float(model(input_ids=ids, labels=labels).loss))
    return sum(losses) / len(losses)


def test_chat_model_answers_after_training_and_keeps_its_template(tmp_path: Path) -> None:
    base = build_chat_llama(tmp_path / "base", template=None)  # the template comes with the job
    trainer = HFTrainer()
    model, tokenizer = trainer(
        str(base),
        chat_rows(6),
        validation=chat_rows(1, seed=1),
        chat_template=CHAT_TEMPLATE,
        per_device_train_batch_size=8,
        output_dir=str(tmp_path / "out"),
        **TRAIN,
    )
    for thing in THINGS:
        assert reply(model, tokenizer, [{"role": "user", "content": question(thing)}]) == answer(thing)
    # Every assistant turn of a conversation was trained, the second one too.
    second = [
        {"role": "user", "content": question("cat")},
        {"role": "assistant", "content": answer("cat")},
        {"role": "user", "content": question("box")},
    ]
    assert reply(model, tokenizer, second) == answer("box")

    assert AutoTokenizer.from_pretrained(tmp_path / "out").chat_template == CHAT_TEMPLATE
    assert trainer.sft is not None and trainer.sft.chat_template_source == "chatTemplate"
    assert trainer.metrics["perplexity"] == pytest.approx(math.exp(trainer.metrics["loss"]))


def test_default_loss_does_not_learn_the_user_turns(chat_llama: Path) -> None:
    rows = chat_rows(6, system=False)
    answers_only, tokenizer = HFTrainer()(str(chat_llama), rows, per_device_train_batch_size=8, **TRAIN)
    everything, _ = HFTrainer()(str(chat_llama), rows, per_device_train_batch_size=8, train_on_prompt=True, **TRAIN)

    # Both learnt the answers; only trainOnPrompt learnt to predict the (always alike) questions:
    # with the default loss the user turns stay near chance, -log(1 / vocabulary size).
    chance = math.log(len(tokenizer))
    assert turn_loss(answers_only, tokenizer, "assistant") < 0.5
    assert turn_loss(everything, tokenizer, "assistant") < 1.0
    assert turn_loss(everything, tokenizer, "user") < 1.0
    assert turn_loss(answers_only, tokenizer, "user") > 0.8 * chance


def test_packed_training_learns_the_same_answers(chat_llama: Path) -> None:
    trainer = HFTrainer()
    model, tokenizer = trainer(str(chat_llama), chat_rows(6), packing=True, per_device_train_batch_size=2, **TRAIN)
    assert trainer.sft is not None and trainer.sft.batching == "packed"
    for thing in THINGS:
        assert reply(model, tokenizer, [{"role": "user", "content": question(thing)}]) == answer(thing)


class EvalSeen(TrainerCallback):
    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


@pytest.mark.parametrize(
    ("quantize", "layer", "packing"),
    [(True, bnb.nn.Linear4bit, True), ({"load_in_8bit": True}, bnb.nn.Linear8bitLt, False)],
    ids=["4bit-packed", "8bit-padded"],
)
def test_quantized_lora_on_chat_data_runs_on_cpu(
    chat_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quantize: Any, layer: type, packing: bool
) -> None:
    monkeypatch.setenv(ENV_QUANTIZE_ON_CPU, "1")
    seen = EvalSeen()
    trainer = HFTrainer()
    model, _ = trainer(
        str(chat_llama),
        chat_rows(2),
        validation=chat_rows(1, seed=1),
        task="language-generation",
        quantize=quantize,
        lora=True,
        packing=packing,
        max_steps=3,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=3,
        callbacks=[seen],
        output_dir=str(tmp_path),
    )
    assert trainer.quantized and trainer.adapter and trainer.warnings == []
    assert any(isinstance(module, layer) for module in model.modules())
    assert any(bool(p.abs().sum() > 0) for name, p in model.named_parameters() if "lora_B" in name)
    assert math.isfinite(trainer.metrics["train_loss"])
    assert any("eval_perplexity" in log for log in seen.logs)  # reported in progress, not only at the end
    assert {"adapter_model.safetensors", "chat_template.jinja"} <= {path.name for path in tmp_path.iterdir()}
