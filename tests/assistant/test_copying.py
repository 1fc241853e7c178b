"""Copied numbers: the guard's runs, its masks, and a backend that can only write numbers it was shown."""

from __future__ import annotations

import re

import pytest

from assistant.copying import NumberGuard, allowed_numbers, digit_tokens
from assistant.generation import LocalBackend
from assistant.records import GenerationSettings


@pytest.fixture(scope="module")
def tokenizer(smollm_tokenizer_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_tokenizer_path)


def test_allowed_numbers_are_the_texts_whole_numbers_their_heads_unpadded_forms_and_grouped_thousands():
    numbers = allowed_numbers(["The 06:40 sailing costs €14.60", "1,200 islanders, 98.1% of them"])
    assert numbers == {"06.40", "6.40", "06", "6", "14.60", "14", "1.200", "1", "1200", "98.1", "98"}


def test_the_guard_sees_no_numbers_in_the_prompts_labels():
    from retrieval.citations import grounded_user_message, without_markup_numbers
    from retrieval.records import Chunk

    chunk = Chunk(chunk_id="c", source="fares.pdf", text="98.1% of sailings ran on time.",
                  start=0, end=30, page=4, title="Report 2026")
    message = without_markup_numbers(grounded_user_message("How punctual were the sailings?", [chunk]))
    assert allowed_numbers([message]) == {"98.1", "98", "2026"}  # not the n="1" or page="4" of the fence


def test_digit_tokens_of_smollm2_are_its_ten_single_digits(tokenizer):
    assert sorted(digit_tokens(tokenizer).values()) == list("0123456789")


@pytest.mark.parametrize("text, digits, may_end", [
    ("The fare is €", "016", True),  # the first digits of 14, 06 and 6: not 60 or 40, which stand in no number alone
    ("The fare is €1", "4", False),  # "1" is no shown number: it must go on, to 14
    ("The fare is €14", "", True),  # complete (a rounding of 14.60), and the start of no longer one
    ("The fare is €14.", "6", True),  # on to 14.60, or the sentence ends
    ("The fare is €14.6", "0", False),
    ("The fare is €14.60", "", True),
    ("at 0", "6", False),
    ("at 6", "", True),  # "6" (06 without its zero) is complete, and 06:40 goes on after a separator
    ("at 6.", "4", True),  # "6.40" for "06:40": the separators are one
])
def test_guard_allows_only_prefixes_of_shown_runs_and_ends_only_complete_ones(tokenizer, text, digits, may_end):
    guard = NumberGuard(allowed_numbers(["€14.60 at 06:40"]), digit_tokens(tokenizer))
    allowed, others = guard.allowed(text)
    assert "".join(sorted(guard.digit_tokens[i] for i in allowed)) == digits
    assert others is may_end


def test_mask_moves_the_choice_from_a_made_up_digit_to_a_shown_one(tokenizer):
    import torch

    tokens = digit_tokens(tokenizer)
    ids = {text: i for i, text in tokens.items()}
    guard = NumberGuard(allowed_numbers(["€14.60"]), tokens)
    logits = torch.zeros(len(tokenizer))
    logits[ids["5"]], logits[ids["6"]] = 9.0, 5.0  # the model wants "€15"; "€16" is not shown either
    logits[ids["4"]] = 1.0
    masked = guard.mask(logits, "It costs €1")
    assert int(torch.argmax(masked)) == ids["4"] and guard.masked == 1
    assert torch.isinf(masked[ids["5"]]) and torch.isinf(masked[tokenizer.eos_token_id])  # "€1" cannot end
    fresh = guard.mask(logits, "It costs ")  # no number begun: "5" and "6" start no shown number ("60" is
    assert torch.isinf(fresh[ids["5"]]) and torch.isinf(fresh[ids["6"]])  # only the cents of 14.60)...
    assert not torch.isinf(fresh[ids["1"]])  # ..."1" starts 14


def test_mask_leaves_the_logits_alone_when_it_has_nothing_to_mask_or_nothing_would_be_left(tokenizer):
    import torch

    logits = torch.randn(len(tokenizer))
    every_digit = NumberGuard(frozenset("0123456789"), digit_tokens(tokenizer))
    assert every_digit.mask(logits, "x ") is logits  # any digit starts a shown number, any may end
    seven = NumberGuard(frozenset({"7"}), digit_tokens(tokenizer))
    assert seven.mask(logits, "x 1") is logits  # "1" can neither end nor go on to a shown number
    after_seven = seven.mask(logits, "x 7")  # complete: anything but another digit may follow
    assert torch.isinf(after_seven[digit_tokens(tokenizer).popitem()[0]]) and not torch.isinf(after_seven).all()
    assert seven.mask(logits, "as it says [") is logits  # a citation's number is the citation filter's
    assert seven.mask(logits, "as it says [1, ") is logits


@pytest.fixture(scope="module")
def digit_loving_model(tmp_path_factory, tiny_llama_path):
    """The tiny Llama with its digit embeddings scaled up: unconstrained, it writes numbers everywhere."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        for i in digit_tokens(tok):
            weight[i] *= 40.0
    out = tmp_path_factory.mktemp("digit-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_a_guarded_backend_writes_only_numbers_it_was_shown(workspace, digit_loving_model):
    backend = LocalBackend(workspace, str(digit_loving_model))
    messages = [{"role": "user", "content": "The 06:40 sailing costs €14.60. When does it leave?"}]
    settings = GenerationSettings(max_tokens=40)
    *_, free = backend.stream(messages, settings)
    runs = allowed_numbers([messages[0]["content"]])
    assert set(re.findall(r"[0-9]+", free.text)) - runs, "the unguarded model should make numbers up"
    *_, guarded = backend.stream(messages, settings, numbers=runs)
    written = re.findall(r"[0-9]+", guarded.text)
    if guarded.finish_reason == "length" and guarded.text[-1:].isdigit():
        written.pop()  # cut off by max_tokens in the middle of a shown number
    assert written and set(written) <= runs, guarded.text
    backend.close()
