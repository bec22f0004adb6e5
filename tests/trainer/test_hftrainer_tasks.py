"""The other five tasks end to end on tiny models, judged by behaviour."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import TinyModels
from toy_data import color_questions
from transformers import AutoModelForMaskedLM, AutoModelForPreTraining, AutoTokenizer

from kubetune_trainer import HFTrainer

TEXTS = [
    "the cat sat on the mat",
    "the dog ran in the park",
    "my puppy barks at night",
    "the kitten sleeps on the sofa",
] * 8


def logged_losses(trainer: HFTrainer) -> list[float]:
    assert trainer.trainer is not None
    return [entry["loss"] for entry in trainer.trainer.state.log_history if "loss" in entry]


def test_question_answering_extracts_the_answer(tiny_models: TinyModels) -> None:
    trainer = HFTrainer()
    model, tokenizer = trainer(
        str(tiny_models.bert),
        color_questions(160),
        validation=color_questions(16, seed=1),
        task="question-answering",
        num_train_epochs=8,
        learning_rate=1e-3,
        per_device_train_batch_size=16,
    )
    contexts = [
        "my dog sat on the sofa the color is purple . a big cat",
        "the mat is small the color is green . my bed",
    ]
    encoded = tokenizer(["what is the color ?"] * 2, contexts, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**encoded)
    answers = []
    for row in range(2):
        start, end = int(output.start_logits[row].argmax()), int(output.end_logits[row].argmax())
        answers.append(tokenizer.decode(encoded["input_ids"][row][start : end + 1]))
    assert answers == ["purple", "green"]
    assert trainer.metrics["loss"] < 1.0  # eval loss on unseen questions (untrained: ~2 x ln(25))


def test_sequence_sequence_generates_its_target(tiny_models: TinyModels) -> None:
    pairs = [("one", "eins"), ("two", "zwei"), ("hello world", "hallo welt"), ("thanks", "danke")]
    prefix = "translate english german: "
    model, tokenizer = HFTrainer()(
        str(tiny_models.t5),
        [{"source": source, "target": target} for source, target in pairs],
        task="sequence-sequence",
        prefix=prefix,
        num_train_epochs=60,
        learning_rate=5e-3,
        per_device_train_batch_size=4,
    )
    encoded = tokenizer([prefix + source for source, _ in pairs], return_tensors="pt", padding=True)
    generated = model.generate(**encoded, max_new_tokens=6)
    assert tokenizer.batch_decode(generated, skip_special_tokens=True) == [target for _, target in pairs]


def test_language_generation_loss_falls(tiny_models: TinyModels) -> None:
    trainer = HFTrainer()
    model, tokenizer = trainer(
        str(tiny_models.gpt2),
        [{"text": text} for text in TEXTS],
        task="language-generation",
        maxlength=8,
        num_train_epochs=20,
        learning_rate=3e-3,
        per_device_train_batch_size=4,
        logging_steps=1,
    )
    losses = logged_losses(trainer)
    assert sum(losses[-3:]) / 3 < 0.4 * sum(losses[:3]) / 3
    # The model continues training texts the way they went on ("at" is always followed by "night").
    prompt = tokenizer("my puppy barks at", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=2, do_sample=False)
    assert tokenizer.decode(generated[0, -2:]) == "night <|endoftext|>"


def test_language_modeling_loss_falls(tiny_models: TinyModels) -> None:
    trainer = HFTrainer()
    model, _ = trainer(
        str(tiny_models.bert),
        {"text": TEXTS},
        task="language-modeling",
        maxlength=16,
        num_train_epochs=10,
        learning_rate=3e-3,
        per_device_train_batch_size=4,
        logging_steps=1,
    )
    losses = logged_losses(trainer)
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert type(model).__name__ == "BertForMaskedLM"


def test_token_detection_saves_both_halves_that_reload(tiny_models: TinyModels, tmp_path: Path) -> None:
    trainer = HFTrainer()
    model, _ = trainer(
        str(tiny_models.electra),
        [{"text": text} for text in TEXTS],
        task="token-detection",
        maxlength=16,
        num_train_epochs=2,
        learning_rate=1e-3,
        output_dir=str(tmp_path),
    )
    # Generator and discriminator share one embedding matrix while training.
    assert model.discriminator.get_input_embeddings() is model.generator.get_input_embeddings()
    assert len(logged_losses(trainer)) or trainer.metrics["train_loss"] > 0

    generator = AutoModelForMaskedLM.from_pretrained(tmp_path / "generator")
    discriminator = AutoModelForPreTraining.from_pretrained(tmp_path / "discriminator")
    assert type(generator).__name__ == "ElectraForMaskedLM"
    assert type(discriminator).__name__ == "ElectraForPreTraining"
    assert torch.equal(
        generator.get_input_embeddings().weight, discriminator.get_input_embeddings().weight
    )  # saved after training, still shared
    trained = model.discriminator.get_input_embeddings().weight
    assert torch.equal(discriminator.get_input_embeddings().weight, trained.detach())
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "discriminator")
    with torch.no_grad():
        logits = discriminator(**tokenizer(["the cat sat on the mat"], return_tensors="pt")).logits
    assert logits.shape == (1, 8)  # one replaced-or-not score per token
