"""Extractive question-answering features: overflow windows and answer token positions.

Each (question, context) pair becomes one or more windows of at most `maxlength`
tokens, overlapping by `stride`. A window whose context holds the answer is labelled
with the answer's first and last token; any other window points at the CLS token
("no answer here"). The seed labelled such windows with positions outside the
answer; here the answer must lie inside the window, as in Hugging Face's run_qa.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from kubetune_trainer.errors import DataError


def answer_span(answer: Any, context: str, row: int) -> tuple[int, int] | None:
    """(start_char, end_char) of the first answer in `context`, or None for no answer.

    Accepts SQuAD style `{"text": [...], "answer_start": [...]}` (lists or scalars) and
    a plain string, which is looked up in the context.
    """
    if answer is None:
        return None
    if isinstance(answer, Mapping):
        texts, starts = answer.get("text"), answer.get("answer_start")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        starts = [starts] if isinstance(starts, int) else list(starts or [])
        if not texts:
            return None
        if not starts:
            return answer_span(texts[0], context, row)
        return int(starts[0]), int(starts[0]) + len(texts[0])
    if isinstance(answer, str):
        if not answer:
            return None
        start = context.find(answer)
        if start < 0:
            raise DataError(f"question-answering row {row}: answer {answer!r} does not occur in its context")
        return start, start + len(answer)
    raise DataError(f"question-answering row {row}: answers must be a string or a dict with text and answer_start")


@dataclass(frozen=True)
class QuestionFeatures:
    """A `Dataset.map` function (batched) building QA training features."""

    tokenizer: PreTrainedTokenizerBase
    question: str
    context: str
    answers: str
    maxlength: int
    stride: int

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Tokenize a batch into windows with start_positions / end_positions."""
        right = self.tokenizer.padding_side == "right"
        questions = [question.lstrip() for question in batch[self.question]]
        contexts = batch[self.context]
        encoded = self.tokenizer(
            questions if right else contexts,
            contexts if right else questions,
            truncation="only_second" if right else "only_first",
            max_length=self.maxlength,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        samples = encoded.pop("overflow_to_sample_mapping")
        offsets = encoded.pop("offset_mapping")
        context_id = 1 if right else 0
        starts, ends = [], []
        for window, offset in enumerate(offsets):
            ids = encoded["input_ids"][window]
            cls = ids.index(self.tokenizer.cls_token_id) if self.tokenizer.cls_token_id in ids else 0
            sample = samples[window]
            span = answer_span(batch[self.answers][sample], contexts[sample], sample)
            position = self._position(offset, encoded.sequence_ids(window), context_id, span)
            starts.append(cls if position is None else position[0])
            ends.append(cls if position is None else position[1])
        encoded["start_positions"] = starts
        encoded["end_positions"] = ends
        return dict(encoded)

    @staticmethod
    def _position(
        offset: list[tuple[int, int]], sequence: list[int | None], context_id: int, span: tuple[int, int] | None
    ) -> tuple[int, int] | None:
        """Token (start, end) of `span` when this window's context holds it entirely."""
        if span is None:
            return None
        inside = [index for index, seq in enumerate(sequence) if seq == context_id]
        if not inside:
            return None
        first, last = inside[0], inside[-1]
        start_char, end_char = span
        if not (offset[first][0] <= start_char and offset[last][1] >= end_char):
            return None
        start = first
        while start <= last and offset[start][0] <= start_char:
            start += 1
        end = last
        while end >= first and offset[end][1] >= end_char:
            end -= 1
        return start - 1, end + 1
