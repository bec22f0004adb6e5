"""language-generation data preparation, without training: formats, loss masks, truncation, bad rows."""

from __future__ import annotations

import pytest
from datasets import Dataset
from tiny_chat import CHAT_TEMPLATE, MARKED_TEMPLATE, SYSTEM_LAST_TEMPLATE, chat_rows, chat_tokenizer
from transformers import PreTrainedTokenizerBase

from kubetune_trainer.chat_masks import make_renderer
from kubetune_trainer.errors import ConfigError, DataError
from kubetune_trainer.feature_plan import SFTOptions
from kubetune_trainer.task_recipes import Prepared, prepare

TASK = "language-generation"


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerBase:
    return chat_tokenizer()


def prep(tok: PreTrainedTokenizerBase, rows: list[dict], maxlength: int = 64, **options: object) -> Prepared:
    data_format = options.pop("data_format", None)
    columns = options.pop("columns", None)
    return prepare(
        TASK, Dataset.from_list(rows), None, tok, columns, maxlength, data_format=data_format, sft=SFTOptions(**options)
    )


def trained_text(tok: PreTrainedTokenizerBase, labels: list[int]) -> str:
    return tok.decode([token for token in labels if token != -100])


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str, **extra: object) -> dict[str, object]:
    return {"role": "assistant", "content": text, **extra}


def test_chat_loss_covers_every_assistant_turn_and_nothing_else(tok: PreTrainedTokenizerBase) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "answer with a color"},
                user("what color is the cat ?"),
                assistant("the cat is red"),
                user("what color is the dog ?"),
                assistant("the dog is blue"),
            ]
        }
    ]
    prepared = prep(tok, rows)
    labels = prepared.train[0]["labels"]
    assert trained_text(tok, labels) == "the cat is red <|end|> the dog is blue <|end|>"
    assert prepared.sft is not None and prepared.sft.format == "chat" and prepared.sft.masking == "prefix-render"

    everything = prep(tok, rows, train_on_prompt=True).train[0]
    assert everything["labels"] == everything["input_ids"]


def test_prefix_rendering_finds_what_generation_markers_mark(tok: PreTrainedTokenizerBase) -> None:
    # MARKED_TEMPLATE renders the same text as CHAT_TEMPLATE, with {% generation %} around the answers:
    # transformers' own assistant mask is the reference for the masks kubetune works out itself.
    renderer = make_renderer(tok, CHAT_TEMPLATE)
    for row in chat_rows(2):
        messages = row["messages"]
        ours = renderer.encode(messages, [message["role"] == "assistant" for message in messages])
        reference = tok.apply_chat_template(
            messages, chat_template=MARKED_TEMPLATE, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert ours.input_ids == reference["input_ids"]
        assert ours.mask == reference["assistant_masks"]


def test_weight_zero_keeps_an_assistant_turn_as_context_only(tok: PreTrainedTokenizerBase) -> None:
    messages = [user("what color is the cat ?"), assistant("the cat is blue", weight=0), user("no ?")]
    messages.append(assistant("the cat is red", weight=1))
    assert trained_text(tok, prep(tok, [{"messages": messages}]).train[0]["labels"]) == "the cat is red <|end|>"


def test_template_that_moves_turns_falls_back_or_says_why(tok: PreTrainedTokenizerBase) -> None:
    # The system prompt lands in the last user turn, so earlier prefixes render differently.
    one_turn = [{"role": "system", "content": "answer with a color"}, user("the cat ?"), assistant("red")]
    two_turns = [*one_turn, user("the dog ?"), assistant("blue")]
    prepared = prep(tok, [{"messages": one_turn}], chat_template=SYSTEM_LAST_TEMPLATE)
    assert trained_text(tok, prepared.train[0]["labels"]) == "red <|end|>"
    with pytest.raises(DataError, match=r"train: column 'messages', row 1: .*\{% generation %\} markers"):
        prep(tok, [{"messages": one_turn}, {"messages": two_turns}], chat_template=SYSTEM_LAST_TEMPLATE)
    # Training on every token needs no turn boundaries.
    assert len(prep(tok, [{"messages": two_turns}], chat_template=SYSTEM_LAST_TEMPLATE, train_on_prompt=True).train)


def test_prompt_completion_text_trains_the_completion_and_eos(tok: PreTrainedTokenizerBase) -> None:
    prepared = prep(tok, [{"prompt": "what color is the cat ?", "completion": " red"}])
    assert trained_text(tok, prepared.train[0]["labels"]) == "red <|end|>"
    assert prepared.sft is not None and (prepared.sft.format, prepared.sft.masking) == (
        "prompt-completion",
        "prompt-prefix",
    )


def test_prompt_completion_conversational_trains_the_completion_messages(tok: PreTrainedTokenizerBase) -> None:
    rows = [{"prompt": [user("what color is the cat ?")], "completion": [assistant("the cat is red")]}]
    prepared = prep(tok, rows)
    assert trained_text(tok, prepared.train[0]["labels"]) == "the cat is red <|end|>"
    assert tok.decode(prepared.train[0]["input_ids"]).startswith("<s> <|user|> what color is the cat")


@pytest.mark.parametrize(
    ("rows", "options", "expected"),
    [
        ([{"messages": [user("a")]}], {}, "chat"),
        ([{"prompt": "a", "completion": "b"}], {}, "prompt-completion"),
        ([{"text": "the cat sat"}], {"packing": False}, "text"),
        # Two text columns named with columns are a text pair, as in the seed ...
        ([{"q": "the cat", "a": "sat"}], {"columns": ["q", "a"], "packing": False}, "text"),
        # ... unless the format says otherwise, or the values are conversations.
        (
            [{"q": "the cat", "a": "sat"}],
            {"columns": ["q", "a"], "data_format": "prompt-completion"},
            "prompt-completion",
        ),
        ([{"q": [user("a")], "a": [assistant("b")]}], {"columns": ["q", "a"]}, "prompt-completion"),
        ([{"chat": [user("a"), assistant("b")]}], {"columns": ["chat"]}, "chat"),
    ],
)
def test_data_format_is_detected_or_given(
    tok: PreTrainedTokenizerBase, rows: list, options: dict, expected: str
) -> None:
    if expected == "chat" and "columns" not in options:
        rows = [{"messages": [user("a"), assistant("b")]}]
    prepared = prep(tok, rows, **options)
    assert prepared.sft is not None and prepared.sft.format == expected


def test_plain_text_keeps_the_seed_concatenation_by_default(tok: PreTrainedTokenizerBase) -> None:
    prepared = prep(tok, [{"text": "the cat sat"}, {"text": "the dog ran"}], maxlength=4)
    assert prepared.sft is not None and prepared.sft.batching == "concatenated"
    assert all(len(ids) == 4 for ids in prepared.train["input_ids"])  # chunks of maxlength across rows


def test_truncated_rows_keep_their_answer_start_and_rows_without_one_are_dropped(tok: PreTrainedTokenizerBase) -> None:
    long_question = " ".join(["the"] * 20)
    rows = [
        {"messages": [user("what color is the cat ?"), assistant("the cat is red and the dog is blue")]},
        {"messages": [user(long_question), assistant("red")]},  # the answer starts after token 16
        {"messages": [user("the dog ?"), assistant("blue")]},
    ]
    prepared = prep(tok, rows, maxlength=16)
    assert len(prepared.train) == 2
    cut = prepared.train[0]
    assert len(cut["input_ids"]) == 16
    assert trained_text(tok, cut["labels"]) == "the cat is red and the"  # the answer's first tokens, in place
    assert prepared.warnings == (
        "train: 1 of 3 rows dropped: nothing to learn is left within maxLength 16 tokens (the answer starts "
        "after it); raise maxLength or shorten those rows",
    )
    assert prepared.sft is not None and prepared.sft.dropped_rows == {"train": 1}


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        (
            [{"messages": "hello"}, {"messages": "goodbye"}],
            {},
            r"train: column 'messages', row 0: expected a list of messages .*, got text",
        ),
        (
            [{"messages": ["hello", "goodbye"]}],
            {"data_format": "chat"},
            r"train: column 'messages', row 0: message 0 is not a \{role, content\} object: 'hello'",
        ),
        (
            [{"messages": [user("a"), {"content": "b"}]}],
            {},
            r"train: column 'messages', row 0: message 1 has no role; use one of: system, user, assistant",
        ),
        (
            [{"messages": [user("a"), assistant("b")]}, {"messages": [{"role": "bot", "content": "b"}]}],
            {},
            r"train: column 'messages', row 1: message 0 has role 'bot'; use one of: system, user, assistant",
        ),
        (
            [{"messages": [user("a"), user("b")]}],
            {},
            r"train: column 'messages', row 0: no assistant message to learn from",
        ),
        (
            [{"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": None}],
            {},
            r"train: column 'completion', row 1: the completion is missing",
        ),
        (
            [{"prompt": "a", "completion": ""}],
            {},
            r"train: column 'completion', row 0: the completion is missing",
        ),
        (
            [{"text": "a"}],
            {"data_format": "chat", "columns": ["text"]},
            r"train: column 'text', row 0: expected a list of messages",
        ),
    ],
)
def test_bad_rows_are_named_by_column_and_row(
    tok: PreTrainedTokenizerBase, rows: list, options: dict, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        prep(tok, rows, **options)


def test_chat_data_without_a_template_is_refused_before_training() -> None:
    untemplated = chat_tokenizer(template=None)
    with pytest.raises(ConfigError, match=r"train: column 'messages' holds conversations, but no chat template"):
        prep(untemplated, [{"messages": [user("a"), assistant("b")]}])
    # A template given with the job is used, and set on the tokenizer so it is saved with it.
    prepared = prep(untemplated, [{"messages": [user("a"), assistant("b")]}], chat_template=CHAT_TEMPLATE)
    assert prepared.sft is not None and prepared.sft.chat_template_source == "chatTemplate"
    assert untemplated.chat_template == CHAT_TEMPLATE


def test_broken_template_is_a_config_error(tok: PreTrainedTokenizerBase) -> None:
    with pytest.raises(ConfigError, match="chatTemplate does not render a user/assistant conversation"):
        prep(tok, [{"messages": [user("a"), assistant("b")]}], chat_template="{% for m in messages %}")


def test_format_of_another_task_is_refused(tok: PreTrainedTokenizerBase) -> None:
    with pytest.raises(ConfigError, match="format: unknown data format 'tabular'; use one of: text, chat"):
        prep(tok, [{"text": "a"}], data_format="tabular")
    with pytest.raises(ConfigError, match="task text-classification has one data layout"):
        prepare(
            "text-classification",
            Dataset.from_list([{"text": "a", "label": 0}]),
            None,
            tok,
            None,
            8,
            data_format="text",
        )
