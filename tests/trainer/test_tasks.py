"""Data preparation per task, without training: columns, padding, QA spans, collators."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset
from tiny_models import TinyModels
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from kubetune_trainer.errors import ConfigError, DataError
from kubetune_trainer.features import CausalLMCollator
from kubetune_trainer.inputs import to_dataset
from kubetune_trainer.questions import answer_span
from kubetune_trainer.task_recipes import check_task, prepare, task_columns


@pytest.fixture(scope="module")
def bert_tok(tiny_models: TinyModels) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny_models.bert)


def test_unknown_task_lists_valid_tasks() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown task 'text-clasification'.*text-classification, language-generation"
    ):
        check_task("text-clasification")


def test_default_and_custom_columns() -> None:
    assert task_columns("text-classification", None) == ("text", None, "label")
    assert task_columns("text-classification", ("sentence", "stars")) == ("sentence", None, "stars")
    assert task_columns("text-classification", ["a", "b", "y"]) == ("a", "b", "y")
    assert task_columns("question-answering", None) == ("question", "context", "answers")
    assert task_columns("sequence-sequence", None) == ("source", "target")
    assert task_columns("language-generation", None) == ("text", None)
    with pytest.raises(ConfigError, match="question-answering reads"):
        task_columns("question-answering", ("q", "c"))


def test_to_dataset_forms() -> None:
    rows = [{"text": "a cat", "label": 0}, {"text": "a dog", "label": 1}]
    for data in (rows, pd.DataFrame(rows), Dataset.from_list(rows), {"text": ["a cat", "a dog"], "label": [0, 1]}):
        dataset = to_dataset(data)
        assert dataset.column_names == ["text", "label"] and dataset["label"] == [0, 1]
    with pytest.raises(DataError, match="no rows"):
        to_dataset([])
    with pytest.raises(DataError, match="must hold dicts"):
        to_dataset(["a cat", "a dog"])


def test_missing_column_lists_columns_found(bert_tok: PreTrainedTokenizerBase) -> None:
    data = Dataset.from_list([{"sentence": "a cat", "label": 0}, {"sentence": "a dog", "label": 1}])
    with pytest.raises(DataError, match=r"needs column 'text'.*has columns \['sentence', 'label'\]"):
        prepare("text-classification", data, None, bert_tok, None, 32)


def test_classification_rows_are_not_padded_and_batches_pad_to_their_longest(bert_tok: PreTrainedTokenizerBase) -> None:
    texts = ["cat", "the cat sat on the mat", "the big dog ran in the park with my small puppy today"]
    data = Dataset.from_list([{"sentence": t, "kind": k} for t, k in zip(texts, ["cat", "cat", "dog"], strict=True)])
    prepared = prepare("text-classification", data, None, bert_tok, ("sentence", "kind"), 64)
    lengths = [len(ids) for ids in prepared.train["input_ids"]]
    assert lengths == [3, 8, 14]  # each row as long as itself, [CLS] + words + [SEP]
    assert prepared.train["labels"] == [0, 0, 1]
    assert prepared.labels is not None and prepared.labels.names == ("cat", "dog")

    short = prepared.collator([prepared.train[0], prepared.train[1]])
    assert tuple(short["input_ids"].shape) == (2, 8)  # padded to the batch, not the data set
    assert short["labels"].tolist() == [0, 0]


def test_length_column_for_group_by_length(bert_tok: PreTrainedTokenizerBase) -> None:
    data = Dataset.from_list([{"text": "cat", "label": 0}, {"text": "the cat sat", "label": 1}])
    prepared = prepare("text-classification", data, None, bert_tok, None, 32, lengths=True)
    assert prepared.train["length"] == [3, 5]


def test_pair_classification_uses_both_texts(bert_tok: PreTrainedTokenizerBase) -> None:
    data = Dataset.from_list([{"a": "the cat", "b": "a dog", "y": 1}, {"a": "cat", "b": "cat", "y": 0}])
    prepared = prepare("text-classification", data, None, bert_tok, ("a", "b", "y"), 32)
    assert bert_tok.decode(prepared.train[0]["input_ids"]) == "[CLS] the cat [SEP] a dog [SEP]"


def test_answer_span_forms() -> None:
    context = "the cat sat on the mat"
    assert answer_span("mat", context, 0) == (19, 22)
    assert answer_span({"text": ["mat"], "answer_start": [19]}, context, 0) == (19, 22)
    assert answer_span({"text": "cat", "answer_start": 4}, context, 0) == (4, 7)
    assert answer_span({"text": [], "answer_start": []}, context, 0) is None
    assert answer_span("", context, 0) is None
    with pytest.raises(DataError, match="answer 'dog' does not occur"):
        answer_span("dog", context, 3)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["blue", "mat"], ["blue", "mat"]),  # plain strings, found in the context
        ([{"text": ["blue"], "answer_start": [30]}, {"text": ["the mat"], "answer_start": [15]}], ["blue", "the mat"]),
    ],
)
def test_qa_positions_point_at_the_answer(
    bert_tok: PreTrainedTokenizerBase, answers: list[object], expected: list[str]
) -> None:
    rows = [
        {"question": "what color ?", "context": "the cat is red and the dog is blue", "answers": answers[0]},
        {"question": " where ?", "context": "the cat sat on the mat", "answers": answers[1]},
    ]
    prepared = prepare("question-answering", Dataset.from_list(rows), None, bert_tok, None, 64)
    for row, text in zip(prepared.train, expected, strict=True):
        span = row["input_ids"][row["start_positions"] : row["end_positions"] + 1]
        assert bert_tok.decode(span) == text


def test_qa_long_context_overflows_into_windows(bert_tok: PreTrainedTokenizerBase) -> None:
    words = ["the", "cat", "sat", "on", "the", "mat", "and", "the", "dog", "ran", "in", "the", "park"]
    context = " ".join(words * 3) + " the answer is purple"
    rows = [{"question": "what color ?", "context": context, "answers": "purple"}]
    prepared = prepare("question-answering", Dataset.from_list(rows), None, bert_tok, None, 24, stride=4)
    assert len(prepared.train) > 2  # one row became several overlapping windows
    found = []
    for row in prepared.train:
        assert len(row["input_ids"]) <= 24
        if row["start_positions"] == 0:
            assert row["end_positions"] == 0  # no answer in this window: CLS
        else:
            found.append(bert_tok.decode(row["input_ids"][row["start_positions"] : row["end_positions"] + 1]))
    assert found == ["purple"]


def test_qa_stride_too_large_is_reduced_with_warning(bert_tok: PreTrainedTokenizerBase) -> None:
    rows = [{"question": "what ?", "context": "the cat sat on the mat " * 10, "answers": "cat"}]
    prepared = prepare("question-answering", Dataset.from_list(rows), None, bert_tok, None, 32, stride=128)
    assert prepared.warnings and "stride 128" in prepared.warnings[0]
    assert len(prepared.train) > 1


def test_seq2seq_prefix_and_labels(tiny_models: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models.t5)
    rows = [{"source": "one", "target": "eins"}]
    prepared = prepare(
        "sequence-sequence", Dataset.from_list(rows), None, tok, None, 32, prefix="translate english german: "
    )
    assert tok.decode(prepared.train[0]["input_ids"]) == "translate english german : one </s>"
    assert tok.decode(prepared.train[0]["labels"]) == "eins </s>"
    batch = prepared.collator([prepared.train[0]])
    assert batch["labels"].tolist()[0][-1] == tok.eos_token_id


def test_causal_lm_chunks_end_texts_with_eos_and_keep_it_in_labels(tiny_models: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models.gpt2)
    rows = [{"text": "the cat sat"}, {"text": "the dog ran on the mat"}]
    prepared = prepare("language-generation", Dataset.from_list(rows), None, tok, None, 4)
    ids = [token for row in prepared.train["input_ids"] for token in row]
    assert all(len(row) == 4 for row in prepared.train["input_ids"])  # concatenated chunks of maxlength
    assert ids[:4] == tok("the cat sat")["input_ids"] + [tok.eos_token_id]

    # pad == eos (the usual GPT-2 setup): only padding leaves the loss, EOS stays.
    tok.pad_token = tok.eos_token
    collator = CausalLMCollator(tok)
    batch = collator([{"input_ids": [5, 6, tok.eos_token_id]}, {"input_ids": [7]}])
    assert batch["labels"].tolist() == [[5, 6, tok.eos_token_id], [7, -100, -100]]


def test_masked_lm_collator_masks_tokens(bert_tok: PreTrainedTokenizerBase) -> None:
    rows = [{"text": "the cat sat on the mat and the dog ran in the park " * 4}]
    prepared = prepare("language-modeling", Dataset.from_list(rows), None, bert_tok, None, 16)
    batch = prepared.collator([prepared.train[i] for i in range(len(prepared.train))])
    assert (batch["labels"] != -100).any()
    assert (batch["labels"] == -100).any()


def test_to_dataset_reads_a_data_uri(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    pd.DataFrame([{"text": "a cat", "label": 0}, {"text": "a dog", "label": 1}]).to_csv(path, index=False)
    dataset = to_dataset(str(path))
    assert dataset.column_names == ["text", "label"] and len(dataset) == 2
    with pytest.raises(DataError):
        to_dataset(str(tmp_path / "missing.csv"))
