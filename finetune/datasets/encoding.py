"""Chat examples to token ids and labels, through the tokenizer's own chat template.

The text is rendered with ``tokenizer.apply_chat_template`` exactly as the assistant renders a
prompt at inference time, so an adapter learns on the prompts it will see. Only the assistant
turns are labelled (every other position is -100): for each assistant message we render the
conversation up to it with the generation prompt, and up to and including it; the characters in
between (the answer and its end-of-turn marker) are the ones the model learns to produce.

Over-long rule (``overlong``): ``drop`` (default) removes an example longer than ``max_length``
tokens; ``truncate`` cuts it to ``max_length`` tokens from the end and drops it only if no
answer token is left. Both are counted in ``EncodingReport``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finetune.datasets.records import Example
from finetune.errors import DatasetError

IGNORE_INDEX = -100
OVERLONG_RULES = ("drop", "truncate")


@dataclass(frozen=True)
class EncodedExample:
    """Token ids and labels (-100 outside the assistant's answers) for one example."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    def as_features(self) -> dict:
        """The dict the data collator and the Trainer's length grouping read."""
        return {"input_ids": self.input_ids, "labels": self.labels}


@dataclass
class EncodingReport:
    """How many examples were kept, truncated and dropped, and how many tokens are learned."""

    kept: int = 0
    truncated: int = 0
    dropped_overlong: int = 0
    tokens: int = 0
    answer_tokens: int = 0
    dropped_where: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready counts (with at most five of the dropped examples' locations)."""
        return {"kept": self.kept, "truncated": self.truncated, "dropped_overlong": self.dropped_overlong,
                "tokens": self.tokens, "answer_tokens": self.answer_tokens, "dropped_examples": self.dropped_where[:5]}


def check_chat_template(tokenizer, base: str) -> None:
    """Raise ``DatasetError`` if the tokenizer has no chat template to format examples with."""
    if not getattr(tokenizer, "chat_template", None):
        raise DatasetError(
            f"the tokenizer of {base} has no chat template, so training and inference prompts cannot match; "
            "use an instruct model or add a chat_template to its tokenizer_config.json"
        )


def render(tokenizer, messages, add_generation_prompt: bool = False) -> str:
    """The chat-template text for ``messages`` (the same call the assistant makes)."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def answer_spans(tokenizer, messages, where: str) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    messages = list(messages)
    try:
        full = render(tokenizer, messages)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = render(tokenizer, messages[:i], add_generation_prompt=True)
            through = render(tokenizer, messages[: i + 1])
            if not (through.startswith(before) and full.startswith(through)):
                raise DatasetError(
                    f"{where}: the chat template renders earlier turns differently once later turns are added, "
                    "so the answer tokens cannot be located; use single-answer examples for this model"
                )
            spans.append((len(before), len(through)))
    except DatasetError:
        raise
    except Exception as exc:  # templates raise their own errors (e.g. roles must alternate)
        raise DatasetError(f"{where}: the model's chat template refused this conversation: {exc}") from None
    return full, spans


def encode_example(tokenizer, example: Example, max_length: int, overlong: str = "drop") -> EncodedExample | None:
    """Token ids with labels on the assistant's answers only; ``None`` if dropped by the over-long rule."""
    text, spans = answer_spans(tokenizer, example.messages, example.where)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for t, (start, end) in enumerate(encoding["offset_mapping"]):
        if end > start and any(s <= start and end <= e for s, e in spans):
            labels[t] = ids[t]
    truncated = False
    if len(ids) > max_length:
        if overlong == "drop":
            return None
        ids, labels, truncated = ids[:max_length], labels[:max_length], True
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return EncodedExample(ids, labels, truncated)


def encode_examples(tokenizer, examples: list[Example], max_length: int, overlong: str = "drop"
                    ) -> tuple[list[EncodedExample], EncodingReport]:
    """Encode a list of examples, applying the over-long rule, with counts of what happened."""
    if overlong not in OVERLONG_RULES:
        raise DatasetError(f"unknown overlong rule {overlong!r}; use {' or '.join(OVERLONG_RULES)}")
    report = EncodingReport()
    encoded = []
    for example in examples:
        item = encode_example(tokenizer, example, max_length, overlong)
        if item is None:
            report.dropped_overlong += 1
            report.dropped_where.append(example.where)
            continue
        encoded.append(item)
        report.kept += 1
        report.truncated += item.truncated
        report.tokens += len(item)
        report.answer_tokens += sum(label != IGNORE_INDEX for label in item.labels)
    return encoded, report
