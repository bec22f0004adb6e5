"""text-classification end to end on a tiny BERT, judged by what a user would notice."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import Dataset
from tiny_models import TinyModels
from toy_data import CAT_WORDS, FILLER, animal_sentence, animals
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.trainer_pt_utils import LengthGroupedSampler

from kubetune_trainer import HFTrainer
from kubetune_trainer.errors import ConfigError, DataError
from kubetune_trainer.eval_metrics import default_metrics

FAST = {"num_train_epochs": 10, "learning_rate": 1e-3, "per_device_train_batch_size": 16}
# Multi-label and regression targets need more optimizer steps on a random tiny BERT.
STEPS = {"num_train_epochs": 12, "learning_rate": 1e-3, "per_device_train_batch_size": 8}
CAT_TEXT, DOG_TEXT = "my kitten purrs on the sofa", "the puppy barks in the house"


def predict(model: torch.nn.Module, tokenizer: AutoTokenizer, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(texts, return_tensors="pt", padding=True)).logits


@pytest.fixture(scope="module")
def classifier(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> tuple[HFTrainer, Path, tuple]:
    """String labels in a column named 'animal', text in 'sentence', saved to an output dir."""
    output = tmp_path_factory.mktemp("classifier")
    rows = [{"sentence": text, "animal": label} for text, label in animals(160)]
    validation = [{"sentence": text, "animal": label} for text, label in animals(40, seed=1)]
    trainer = HFTrainer()
    result = trainer(
        str(tiny_models.bert),
        pd.DataFrame(rows),
        validation=validation,
        columns=("sentence", "animal"),
        metrics=default_metrics("text-classification"),
        output_dir=str(output),
        **FAST,
    )
    return trainer, output, result


def test_classifier_ranks_cat_sentence_as_cat(classifier: tuple[HFTrainer, Path, tuple]) -> None:
    _, _, (model, tokenizer) = classifier
    logits = predict(model, tokenizer, [CAT_TEXT, DOG_TEXT])
    names = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert names == ["cat", "dog"]
    assert not model.training  # returned in eval mode, as the seed


def test_metrics_and_state_after_call(classifier: tuple[HFTrainer, Path, tuple]) -> None:
    trainer, _, _ = classifier
    assert trainer.metrics["accuracy"] >= 0.9
    for key in ("loss", "train_loss", "train_runtime", "train_samples_per_second"):
        assert isinstance(trainer.metrics[key], float)
    assert not any(key.startswith("eval_") for key in trainer.metrics)
    assert trainer.warnings == [] and trainer.quantized is False and trainer.adapter is False
    assert trainer.trainer is not None and trainer.labels is not None and trainer.labels.names == ("cat", "dog")


def test_saved_model_keeps_label_names_and_reloads(classifier: tuple[HFTrainer, Path, tuple]) -> None:
    _, output, _ = classifier
    model = AutoModelForSequenceClassification.from_pretrained(output)
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert model.config.id2label == {0: "cat", 1: "dog"} and model.config.label2id == {"cat": 0, "dog": 1}
    assert predict(model, tokenizer, [CAT_TEXT]).argmax(-1).item() == 0


def test_base_with_other_head_size_gets_fresh_head(classifier: tuple[HFTrainer, Path, tuple], tmp_path: Path) -> None:
    """The 2-label model from above retrained for 3 labels: no crash, a warning, a 3-label head."""
    _, output, _ = classifier
    rng = random.Random(5)
    rows = [{"text": animal_sentence(rng, "cat"), "label": 0} for _ in range(8)]
    rows += [{"text": "the red house", "label": 1}, {"text": "the blue bed", "label": 2}]
    trainer = HFTrainer()
    model, _ = trainer(str(output), rows, num_train_epochs=1)
    assert model.config.num_labels == 3 and model.classifier.out_features == 3
    assert any("2-label classification head" in warning for warning in trainer.warnings)


def test_model_pair_base_with_other_label_count(classifier: tuple[HFTrainer, Path, tuple]) -> None:
    _, _, (model, tokenizer) = classifier
    rows = [{"text": "the cat", "label": "a"}, {"text": "the dog", "label": "b"}, {"text": "red", "label": "c"}]
    trained, _ = HFTrainer()((model, tokenizer), rows, num_train_epochs=1)
    assert trained.classifier.out_features == 3 and trained.config.id2label[2] == "c"


def test_multi_label_from_label_vectors(tiny_models: TinyModels) -> None:
    rng = random.Random(2)
    rows = []
    for _ in range(96):
        cat, red = rng.random() < 0.5, rng.random() < 0.5
        text = animal_sentence(rng, "cat" if cat else "dog") + (" red" if red else " blue")
        rows.append({"text": text, "label": [float(cat), float(red)]})
    trainer = HFTrainer()
    model, tokenizer = trainer(str(tiny_models.bert), Dataset.from_list(rows), **STEPS)
    assert model.config.problem_type == "multi_label_classification"
    decided = (predict(model, tokenizer, [f"{CAT_TEXT} red", f"{DOG_TEXT} blue"]) > 0).int().tolist()
    assert decided == [[1, 1], [0, 0]]


def test_regression_from_float_labels(tiny_models: TinyModels) -> None:
    rows = [{"text": text, "label": 0.75 if label == "cat" else 0.25} for text, label in animals(96, seed=3)]
    model, tokenizer = HFTrainer()(str(tiny_models.bert), rows, **STEPS)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    cat, dog = predict(model, tokenizer, [CAT_TEXT, DOG_TEXT]).view(-1).tolist()
    assert cat > 0.5 > dog


def test_text_pairs_from_three_columns(tiny_models: TinyModels) -> None:
    """(text1, text2, label): the label follows the second text, so it must reach the model."""
    rng = random.Random(4)
    rows = []
    for _ in range(128):
        second = rng.choice(["cat", "dog"])
        first = " ".join(rng.choices(FILLER, k=rng.randint(2, 8)))
        rows.append({"q": first, "d": animal_sentence(rng, second), "about": second})
    trainer = HFTrainer()
    model, tokenizer = trainer(str(tiny_models.bert), rows, columns=("q", "d", "about"), **FAST)
    assert trainer.labels is not None and trainer.labels.names == ("cat", "dog")
    pairs = tokenizer(["the big house", "my bed"], [CAT_TEXT, DOG_TEXT], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**pairs).logits.argmax(-1).tolist() == [0, 1]


def test_batches_are_padded_per_batch_and_group_by_length_works(tiny_models: TinyModels) -> None:
    rows = [{"text": text, "label": label} for text, label in animals(64, seed=6, low=1, high=40)]
    widths = {}
    for grouped in (False, True):
        trainer = HFTrainer()
        trainer(str(tiny_models.bert), rows, num_train_epochs=1, per_device_train_batch_size=8, group_by_length=grouped)
        assert trainer.trainer is not None
        loader = trainer.trainer.get_train_dataloader()
        batches = list(loader)
        for batch in batches:
            real = batch["attention_mask"].sum(-1)
            assert batch["input_ids"].shape[1] == int(real.max())  # padded to this batch's longest row only
        widths[grouped] = sum(batch["input_ids"].numel() for batch in batches)
        sampler = trainer.trainer._get_train_sampler()
        assert isinstance(sampler, LengthGroupedSampler) is grouped
    assert widths[True] < 0.8 * widths[False]  # grouping similar lengths wastes less padding


def test_unknown_task_and_training_argument_and_column(tiny_models: TinyModels) -> None:
    rows = [{"text": "a cat", "label": 0}, {"text": "a dog", "label": 1}]
    with pytest.raises(ConfigError, match="valid tasks: text-classification"):
        HFTrainer()(str(tiny_models.bert), rows, task="classify")
    with pytest.raises(ConfigError, match=r"'num_train_epoch' \(did you mean: num_train_epochs"):
        HFTrainer()(str(tiny_models.bert), rows, num_train_epoch=3)
    with pytest.raises(DataError, match=r"needs column 'sentiment'.*columns \['text', 'label'\]"):
        HFTrainer()(str(tiny_models.bert), rows, columns=("text", "sentiment"))
    with pytest.raises(DataError, match="does not occur in the training data"):
        HFTrainer()(
            str(tiny_models.bert),
            [{"text": "a cat", "label": "cat"}, {"text": "a dog", "label": "dog"}],
            validation=[{"text": "a bird", "label": "bird"}],
        )


def test_nothing_written_without_output_dir(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    HFTrainer()(
        str(tiny_models.bert), [{"text": word, "label": i % 2} for i, word in enumerate(CAT_WORDS)], num_train_epochs=1
    )
    assert list(tmp_path.iterdir()) == []
