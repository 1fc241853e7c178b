"""Chat-template encoding: the prompt matches inference, and only the assistant's tokens are labelled."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from finetune.datasets import Example
from finetune.datasets.encoding import IGNORE_INDEX, encode_example, encode_examples

CONVERSATION = (
    {"role": "system", "content": "Answer from the documents."},
    {"role": "user", "content": "Who founded Saltreach?"},
    {"role": "assistant", "content": "Mara Quill founded it [1]."},
    {"role": "user", "content": "When?"},
    {"role": "assistant", "content": "In 1987 [2]."},
)


@pytest.fixture(scope="module")
def tokenizer(smollm_tokenizer_path):
    return AutoTokenizer.from_pretrained(smollm_tokenizer_path)


def example(messages=CONVERSATION, line=1):
    return Example(tuple(messages), "data.jsonl", line, "messages")


def labelled_text(tokenizer, encoded):
    return tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])


def test_only_assistant_answers_and_their_end_markers_are_labelled(tokenizer):
    encoded = encode_example(tokenizer, example(), max_length=512)
    assert labelled_text(tokenizer, encoded) == "Mara Quill founded it [1].<|im_end|>\nIn 1987 [2].<|im_end|>\n"
    prompt_ids = tokenizer.apply_chat_template(list(CONVERSATION[:2]), add_generation_prompt=True, tokenize=False)
    n_prompt = len(tokenizer(prompt_ids, add_special_tokens=False)["input_ids"])
    assert all(label == IGNORE_INDEX for label in encoded.labels[:n_prompt])
    assert encoded.labels[n_prompt] != IGNORE_INDEX


def test_training_prompt_is_the_inference_prompt_token_for_token(tokenizer):
    messages = list(CONVERSATION[:3])
    encoded = encode_example(tokenizer, example(messages), max_length=512)
    inference = tokenizer(tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=False),
                          add_special_tokens=False)["input_ids"]
    assert encoded.input_ids[: len(inference)] == inference
    first_labelled = next(i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    assert first_labelled == len(inference)


def test_overlong_examples_are_dropped_by_default_and_counted(tokenizer):
    long = example([{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}], line=2)
    encoded, report = encode_examples(tokenizer, [example(), long], max_length=128)
    assert len(encoded) == 1
    assert report.dropped_overlong == 1 and report.dropped_where == ["data.jsonl:2"]


def test_truncate_rule_cuts_to_max_length_and_drops_when_no_answer_is_left(tokenizer):
    long_answer = example([{"role": "user", "content": "q"}, {"role": "assistant", "content": "word " * 300}])
    long_prompt = example([{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}], line=2)
    encoded, report = encode_examples(tokenizer, [long_answer, long_prompt], max_length=64, overlong="truncate")
    assert [len(e) for e in encoded] == [64]
    assert report.truncated == 1 and report.dropped_overlong == 1
