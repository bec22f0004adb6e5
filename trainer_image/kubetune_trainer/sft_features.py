"""language-generation fine-tuning features: chat, prompt-completion and text rows kept apart.

Every row becomes `input_ids` and `labels` (-100 where the loss does not look), cut to
maxlength from the end. A row left with nothing to learn (its answer lies beyond
maxlength) is dropped and counted in a warning instead of being trained as all-masked.
Then the rows are either padded per batch or packed (`packing.py`).

The seed's concatenate-and-chunk for plain text (the default when `packing` is unset)
is `features.ConcatenatedTexts`, not this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase
from trl.data_utils import common_prefix_length

from kubetune_trainer.chat_masks import ChatRenderer, Rendered, UnlocatableTurns, make_renderer
from kubetune_trainer.chat_template import ChatTemplate, choose_template, tokenizer_template
from kubetune_trainer.errors import DataError
from kubetune_trainer.feature_plan import FeaturePlan, FeatureRequest, MapFunction, SFTReport
from kubetune_trainer.packing import IGNORED, PackedCollator, pack, padded_collator
from kubetune_trainer.sft_rows import Conversation, Where, chat_row, prompt_completion_row, text_of

Batch = dict[str, list[Any]]


@dataclass
class LabelledRows:
    """Rows cut to maxlength with labels; rows with no label left (bar the first token) are left out."""

    maxlength: int
    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)

    def add(self, ids: list[int], mask: list[int]) -> None:
        ids, mask = ids[: self.maxlength], mask[: self.maxlength]
        # The first token is never predicted (nothing comes before it), so it cannot carry the loss.
        if any(mask[1:]):
            self.input_ids.append(ids)
            self.labels.append([token if keep else IGNORED for token, keep in zip(ids, mask, strict=True)])

    def columns(self) -> Batch:
        return {"input_ids": self.input_ids, "labels": self.labels}


def _with_eos(ids: list[int], mask: list[int], eos: int | None) -> tuple[list[int], list[int]]:
    """End a plain-text row with EOS (trained) so the model learns where its answer stops."""
    if eos is None or (ids and ids[-1] == eos):
        return ids, mask
    return [*ids, eos], [*mask, 1]


def _rendered(renderer: ChatRenderer | None, conversation: Conversation, where: Where) -> Rendered:
    if renderer is None:
        raise where.error(
            "this row is a conversation, but no chat template was given and the tokenizer has none; "
            "set chatTemplate in the spec (chat_template= in Python)"
        )
    try:
        return renderer.encode(conversation.messages, conversation.trained)
    except UnlocatableTurns as error:
        raise where.error(str(error)) from None
    except TemplateError as error:
        raise where.error(f"the chat template refused this conversation: {error}") from None


@dataclass(frozen=True)
class ChatRows:
    renderer: ChatRenderer
    column: str
    maxlength: int
    role: str
    train_on_prompt: bool

    def __call__(self, batch: Batch, indices: list[int]) -> Batch:
        rows = LabelledRows(self.maxlength)
        for value, row in zip(batch[self.column], indices, strict=True):
            where = Where(self.role, self.column, row)
            rendered = _rendered(self.renderer, chat_row(value, where, self.train_on_prompt), where)
            rows.add(rendered.input_ids, rendered.mask)
        return rows.columns()


@dataclass(frozen=True)
class PromptCompletionRows:
    tokenizer: PreTrainedTokenizerBase
    renderer: ChatRenderer | None  # None: no chat template, so text rows only
    prompt: str
    completion: str
    maxlength: int
    role: str
    train_on_prompt: bool

    def __call__(self, batch: Batch, indices: list[int]) -> Batch:
        rows = LabelledRows(self.maxlength)
        for prompt, completion, row in zip(batch[self.prompt], batch[self.completion], indices, strict=True):
            where = Where(self.role, self.prompt, row)
            parsed = prompt_completion_row(prompt, completion, where, self.completion, self.train_on_prompt)
            if isinstance(parsed, Conversation):
                rendered = _rendered(self.renderer, parsed, where)
                rows.add(rendered.input_ids, rendered.mask)
                continue
            # The completion starts where the prompt's tokens and the whole row's part ways (as in TRL).
            prompt_ids = self.tokenizer(parsed[0])["input_ids"]
            ids = self.tokenizer(parsed[0] + parsed[1])["input_ids"]
            start = common_prefix_length(prompt_ids, ids)
            mask = [1 if self.train_on_prompt else 0] * start + [1] * (len(ids) - start)
            rows.add(*_with_eos(ids, mask, self.tokenizer.eos_token_id))
        return rows.columns()


@dataclass(frozen=True)
class TextRows:
    tokenizer: PreTrainedTokenizerBase
    text1: str
    text2: str | None
    maxlength: int
    role: str

    def __call__(self, batch: Batch, indices: list[int]) -> Batch:
        columns = [self.text1] if self.text2 is None else [self.text1, self.text2]
        texts = [
            [text_of(value, Where(self.role, column, row)) for value, row in zip(batch[column], indices, strict=True)]
            for column in columns
        ]
        rows = LabelledRows(self.maxlength)
        for ids in self.tokenizer(*texts)["input_ids"]:
            rows.add(*_with_eos(list(ids), [1] * len(ids), self.tokenizer.eos_token_id))
        return rows.columns()


def chat_features(request: FeatureRequest) -> FeaturePlan:
    (column,) = request.columns
    assert column is not None
    template = choose_template(
        request.tokenizer, request.sft.chat_template, f"train: column {column!r} holds conversations"
    )
    renderer = make_renderer(request.tokenizer, template.text)
    return _plan(
        request,
        lambda role: ChatRows(renderer, column, request.maxlength, role, request.sft.train_on_prompt),
        SFTReport("chat", _loss(request, "assistant turns"), renderer.method, _batching(request)),
        template,
    )


def prompt_completion_features(request: FeatureRequest) -> FeaturePlan:
    prompt, completion = request.columns
    assert prompt is not None and completion is not None
    tokenizer = request.tokenizer
    conversational = isinstance(request.train[0][prompt], list)
    template: ChatTemplate | None = None
    if conversational or request.sft.chat_template or tokenizer_template(tokenizer):
        template = choose_template(tokenizer, request.sft.chat_template, f"train: column {prompt!r} holds messages")
    renderer = make_renderer(tokenizer, template.text) if template is not None else None
    masking = renderer.method if conversational and renderer is not None else "prompt-prefix"
    return _plan(
        request,
        lambda role: PromptCompletionRows(
            tokenizer, renderer, prompt, completion, request.maxlength, role, request.sft.train_on_prompt
        ),
        SFTReport("prompt-completion", _loss(request, "completion"), masking, _batching(request)),
        template,
    )


def text_features(request: FeatureRequest) -> FeaturePlan:
    """Plain text rows kept apart (packing true or false); every token is trained."""
    text1, text2 = request.columns
    assert text1 is not None
    return _plan(
        request,
        lambda role: TextRows(request.tokenizer, text1, text2, request.maxlength, role),
        SFTReport("text", "every token", None, _batching(request)),
        None,
    )


def _loss(request: FeatureRequest, default: str) -> str:
    return "every token" if request.sft.train_on_prompt else default


def _batching(request: FeatureRequest) -> str:
    return "packed" if request.sft.packing else "padded"


def _plan(
    request: FeatureRequest,
    encoder: Callable[[str], MapFunction],
    report: SFTReport,
    template: ChatTemplate | None,
) -> FeaturePlan:
    if template is not None:
        report.chat_template_sha256, report.chat_template_source = template.sha256, template.source
    # HFTrainer pads with EOS when the tokenizer has no pad token; labels, not ids, say what is trained.
    pad_id = request.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = request.tokenizer.eos_token_id
    packing = bool(request.sft.packing)
    collator = PackedCollator(pad_id) if packing else padded_collator(pad_id, request.pad_to_multiple_of)
    plan = FeaturePlan(encoder, collator, indexed=True, sft=report)
    if isinstance(collator, PackedCollator):
        plan.bind = collator.bind

    def finish(original: Dataset, mapped: Dataset, role: str) -> Dataset:
        dropped = len(original) - len(mapped)
        if dropped:
            report.dropped_rows[role] = dropped
            plan.warnings.append(
                f"{role}: {dropped} of {len(original)} rows dropped: nothing to learn is left within maxLength "
                f"{request.maxlength} tokens (the answer starts after it); raise maxLength or shorten those rows"
            )
        if len(mapped) == 0:
            raise DataError(f"{role}: no row has anything to learn within maxLength {request.maxlength} tokens")
        # Evaluation stays row by row: the same loss whether or not training packs.
        return pack(mapped, request.maxlength, request.workers) if packing and role == "train" else mapped

    plan.finish = finish
    return plan
