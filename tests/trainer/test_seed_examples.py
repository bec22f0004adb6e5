"""The seed documents' examples, with only the import changed (and tiny local models
in place of hub ids, since nothing may be downloaded here).

Seed 002 (HFTrainer user docs) and seed 000 (HFTrainer.model).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset
from tiny_models import TinyModels
from toy_data import animals
from transformers import AutoConfig, AutoTokenizer, BitsAndBytesConfig

from kubetune_trainer import HFTrainer


@pytest.fixture()
def training_csv(tmp_path: Path) -> Path:
    path = tmp_path / "training.csv"
    pd.DataFrame([{"text": text, "label": int(label == "dog")} for text, label in animals(16)]).to_csv(
        path, index=False
    )
    return path


def test_seed_002_example(tiny_models: TinyModels, training_csv: Path) -> None:
    base = str(tiny_models.bert)  # "bert-base-uncased" in the docs
    trainer = HFTrainer()

    # Pandas DataFrame
    df = pd.read_csv(training_csv)
    model, tokenizer = trainer(base, df)

    # Hugging Face dataset (glue/sst2 in the docs: a "sentence" column)
    ds = {"train": Dataset.from_list([{"sentence": text, "label": int(label == "dog")} for text, label in animals(16)])}
    model, tokenizer = trainer(base, ds["train"], columns=("sentence", "label"))

    # List of dicts
    dt = [{"text": "sentence 1", "label": 0}, {"text": "sentence 2", "label": 1}]
    model, tokenizer = trainer(base, dt)

    # Support additional TrainingArguments
    model, tokenizer = trainer(base, dt, learning_rate=3e-5, num_train_epochs=5)
    assert model.config.num_labels == 2 and tokenizer is not None
    assert trainer.trainer is not None and trainer.trainer.args.learning_rate == 3e-5


def test_seed_002_peft_examples(tiny_models: TinyModels, no_quantize_on_cpu: None) -> None:
    base = str(tiny_models.llama)
    dt = [{"text": "the cat sat on the mat"}, {"text": "the dog ran in the park"}]
    trainer = HFTrainer()
    trainer(base, dt, task="language-generation", quantize=True, lora=True, max_steps=1)
    assert trainer.adapter and not trainer.quantized  # no GPU here: quantization skipped, said so
    assert any("quantization skipped" in warning for warning in trainer.warnings)

    quantize = {
        "load_in_4bit": True,
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "bfloat16",
    }
    lora = {"r": 16, "lora_alpha": 8, "target_modules": "all-linear", "lora_dropout": 0.05, "bias": "none"}
    trainer(base, dt, task="language-generation", quantize=quantize, lora=lora, max_steps=1)
    assert trainer.adapter
    assert lora == {"r": 16, "lora_alpha": 8, "target_modules": "all-linear", "lora_dropout": 0.05, "bias": "none"}


def test_seed_000_model_method(tiny_models: TinyModels, no_quantize_on_cpu: None) -> None:
    trainer = HFTrainer()

    config = AutoConfig.from_pretrained(tiny_models.bert)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.bert)
    model = trainer.model(
        task="text-classification", base=tiny_models.bert, config=config, labels=2, tokenizer=tokenizer, quantize=None
    )
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 2

    config = AutoConfig.from_pretrained(tiny_models.llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.llama)
    model = trainer.model(
        task="language-generation",
        base=tiny_models.llama,
        config=config,
        labels=None,
        tokenizer=tokenizer,
        quantize=True,
    )
    assert type(model).__name__ == "LlamaForCausalLM"
    assert trainer.quantized is False and trainer.warnings  # skipped without a GPU, with a warning

    quantize_config = {
        "load_in_4bit": True,
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "bfloat16",
    }
    model = trainer.model(
        task="language-generation",
        base=tiny_models.llama,
        config=config,
        labels=None,
        tokenizer=tokenizer,
        quantize=quantize_config,
    )
    assert type(model).__name__ == "LlamaForCausalLM"

    for task, name in [
        ("language-modeling", "BertForMaskedLM"),
        ("question-answering", "BertForQuestionAnswering"),
    ]:
        loaded = trainer.model(task, tiny_models.bert, AutoConfig.from_pretrained(tiny_models.bert), None, None, None)
        assert type(loaded).__name__ == name
    seq2seq = trainer.model(
        "sequence-sequence", tiny_models.t5, AutoConfig.from_pretrained(tiny_models.t5), None, None, None
    )
    assert type(seq2seq).__name__ == "T5ForConditionalGeneration"
    detection = trainer.model(
        "token-detection",
        tiny_models.electra,
        AutoConfig.from_pretrained(tiny_models.electra),
        None,
        AutoTokenizer.from_pretrained(tiny_models.electra),
        None,
    )
    assert type(detection.generator).__name__ == "ElectraForMaskedLM"
    assert type(detection.discriminator).__name__ == "ElectraForPreTraining"


def test_seed_000_model_with_bitsandbytes_config_forced_on_cpu(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETUNE_QUANTIZE_ON_CPU", "1")
    trainer = HFTrainer()
    config = AutoConfig.from_pretrained(tiny_models.llama)
    model = trainer.model(
        "language-generation",
        tiny_models.llama,
        config,
        None,
        None,
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
    )
    assert trainer.quantized is True and getattr(model, "is_loaded_in_4bit", False)
