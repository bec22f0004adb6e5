"""Label inference/encoding, default metrics and TrainingArguments building (no training)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset
from transformers import EvalPrediction

from kubetune_trainer.errors import ConfigError, DataError
from kubetune_trainer.eval_metrics import default_metrics
from kubetune_trainer.labels import DEFAULT_MAX_LABELS, LabelScheme, infer_labels, max_labels_from
from kubetune_trainer.training_args import build_training_args


def _labels(values: list[object], known: dict[str, int] | None = None) -> LabelScheme:
    return infer_labels(Dataset.from_dict({"y": values}), "y", known)


def test_int_labels_are_class_ids() -> None:
    scheme = _labels([0, 2, 1, 2])
    assert (scheme.kind, scheme.num_labels, scheme.names) == ("single", 3, None)
    assert scheme.encode([2, 0]) == [2, 0]
    with pytest.raises(DataError, match=r"not a class id in 0\.\.2"):
        scheme.encode([3], "validation")


def test_string_labels_are_encoded_with_names() -> None:
    scheme = _labels(["dog", "cat", "dog"])
    assert scheme.names == ("cat", "dog")
    assert scheme.encode(["dog", "cat"]) == [1, 0]
    assert scheme.id2label == {0: "cat", 1: "dog"} and scheme.label2id == {"cat": 0, "dog": 1}
    with pytest.raises(DataError, match=r"label 'bird' does not occur in the training data"):
        scheme.encode(["bird"], "validation")


def test_string_labels_keep_known_ids_from_base() -> None:
    scheme = _labels(["pos", "neg"], known={"pos": 0, "neutral": 1, "neg": 2})
    assert scheme.names == ("pos", "neutral", "neg")
    assert scheme.encode(["neg"]) == [2]


def test_float_labels_are_regression() -> None:
    scheme = _labels([0.5, 1.0, 3.25])
    assert (scheme.kind, scheme.num_labels, scheme.problem_type) == ("regression", 1, "regression")
    assert scheme.encode([1]) == [1.0]


def test_vector_labels_are_multi_label() -> None:
    scheme = _labels([[1, 0, 1], [0, 1, 0]])
    assert (scheme.kind, scheme.num_labels, scheme.problem_type) == ("multi", 3, "multi_label_classification")
    assert scheme.encode([[1, 0, 0]]) == [[1.0, 0.0, 0.0]]
    with pytest.raises(DataError, match="must all have 3 values"):
        scheme.encode([[1, 0]])


def test_negative_ints_become_categories() -> None:
    scheme = _labels([-1, 1, -1])
    assert scheme.names == ("-1", "1") and scheme.encode([1, -1]) == [1, 0]


@pytest.mark.parametrize(
    ("values", "message"),
    [(["a", "a"], "at least two"), ([1, None], "without a label")],
)
def test_bad_labels(values: list[object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        _labels(values)


def test_id_like_numbers_are_not_a_head_of_a_billion_outputs() -> None:
    """User ids taken for class ids: refused as data, not an out-of-memory retried later."""
    ids = [1_000_000_000, 17, 4_242, 17]
    with pytest.raises(DataError) as refused:
        infer_labels(Dataset.from_dict({"user_id": ids}), "user_id")
    message = str(refused.value)
    assert message.startswith(
        "train: label column 'user_id' holds whole numbers up to 1000000000 (3 distinct values), read as class "
        f"ids 0..1000000000: a head of 1000000001 outputs, more than the limit of {DEFAULT_MAX_LABELS} "
        "(KUBETUNE_MAX_LABELS / HFTrainer maxlabels)."
    )
    assert "map them to 0..2 or make them text (e.g. 'c1000000000')" in message
    assert "kubetune trains a regression on fractional numbers" in message


def test_too_many_distinct_text_labels_name_the_column_and_the_limit() -> None:
    texts = [f"review number {index}" for index in range(30)]
    with pytest.raises(DataError) as refused:
        infer_labels(Dataset.from_dict({"review": texts}), "review", max_labels=20)
    assert str(refused.value).startswith(
        "train: label column 'review' has 30 distinct values ('review number 0', 'review number 1', "
        "'review number 10', ...), more than the limit of 20 labels"
    )
    assert "name the columns in data.columns (the label comes last)" in str(refused.value)
    assert infer_labels(Dataset.from_dict({"y": texts}), "y", max_labels=30).num_labels == 30  # at the limit


def test_the_label_limit_comes_from_the_environment() -> None:
    assert max_labels_from({}) == DEFAULT_MAX_LABELS == 10_000
    assert max_labels_from({"KUBETUNE_MAX_LABELS": "50000"}) == 50_000
    for wrong in ("lots", "1", "-3"):
        with pytest.raises(ConfigError, match=rf"KUBETUNE_MAX_LABELS='{wrong}': expected a whole number of labels"):
            max_labels_from({"KUBETUNE_MAX_LABELS": wrong})


def test_default_metrics_single_multi_regression() -> None:
    metric = default_metrics("text-classification")
    assert metric is not None
    single = metric(
        EvalPrediction(predictions=np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), label_ids=np.array([0, 1, 1]))
    )
    assert single == {"accuracy": pytest.approx(2 / 3)}

    multi = metric(
        EvalPrediction(
            predictions=np.array([[1.0, -1.0, 2.0], [-1.0, 1.0, -1.0]]),
            label_ids=np.array([[1, 0, 1], [0, 0, 1]], dtype=float),
        )
    )
    assert multi["accuracy"] == pytest.approx(0.5)
    assert multi["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))

    regression = metric(EvalPrediction(predictions=np.array([[1.0], [3.0]]), label_ids=np.array([2.0, 3.0])))
    assert regression["mse"] == pytest.approx(0.5) and regression["mae"] == pytest.approx(0.5)

    for task in (
        "language-generation",
        "language-modeling",
        "question-answering",
        "sequence-sequence",
        "token-detection",
    ):
        assert default_metrics(task) is None


def test_training_args_defaults_write_nothing() -> None:
    args = build_training_args({})
    assert args.output_dir == "" and not args.should_save
    assert args.save_strategy == "no" and args.report_to in ([], "none", ["none"])
    assert args.use_cpu is True  # no accelerator on this machine
    assert args.train_sampling_strategy == "group_by_length"  # pairs with per-batch padding


def test_length_grouping_can_be_turned_off() -> None:
    assert build_training_args({"group_by_length": False}).train_sampling_strategy == "random"
    assert build_training_args({"train_sampling_strategy": "sequential"}).train_sampling_strategy == "sequential"


def test_training_args_pass_through_and_alias(tmp_path) -> None:
    args = build_training_args(
        {"learning_rate": 3e-5, "num_train_epochs": 5, "group_by_length": True, "output_dir": str(tmp_path)}
    )
    assert args.learning_rate == 3e-5 and args.num_train_epochs == 5
    assert args.train_sampling_strategy == "group_by_length"
    assert args.should_save


def test_unknown_training_argument_names_closest() -> None:
    with pytest.raises(ConfigError, match=r"unknown training argument 'learning_rat' \(did you mean: learning_rate"):
        build_training_args({"learning_rat": 1e-3})


def test_invalid_training_argument_value() -> None:
    with pytest.raises(ConfigError, match="invalid training arguments"):
        build_training_args({"eval_strategy": "sometimes"})


def test_kubetune_run_defaults_pass_the_catalogue() -> None:
    """The trainingArgs kubetune adds on its own must be ones the spec accepts."""
    from kubetune_api.arguments import check_training_args
    from kubetune_trainer.runner import RUN_DEFAULTS
    from kubetune_trainer.training_args import STATIC_DEFAULTS

    owned = {"output_dir"}
    assert check_training_args({k: v for k, v in {**STATIC_DEFAULTS, **RUN_DEFAULTS}.items() if k not in owned}) == []
