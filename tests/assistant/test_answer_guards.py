"""Guards on what a grounded answer may become: it stops at the prompt's own markup and at a loop."""

from __future__ import annotations

import pytest

from assistant.assistant import Assistant, looping
from assistant.records import GenerationSettings

from tests.assistant.conftest import build_parrot, fill_docs_kb


@pytest.mark.parametrize("text", [
    "The limit is - 10. - 10. - 10.",
    "Boarding at gate B12, gate B12, gate B12,",
    "| --- | --- | --- | --- | --- | --- |",
])
def test_a_stretch_written_three_times_in_a_row_is_a_loop(text):
    assert looping(text)


@pytest.mark.parametrize("text", [
    "The cache keeps entries for 300 seconds.",
    "A page holds 1 000 000 000 bytes at most.",  # digit groups are not a loop
    "No, no. The ferry leaves at seven [1].",
    "The rye loaf weighs 900 grams and costs 4.20 [2].",
])
def test_ordinary_answers_are_not_loops(text):
    assert not looping(text)


def _assistant(tmp_path, tokenizer, embedder, answer, loop=False, max_tokens=40):
    from ragtune.workspace import Workspace

    ws = Workspace.open(tmp_path / "home")
    fill_docs_kb(ws, embedder, tmp_path / "docs").close()
    model = build_parrot(tokenizer, answer, tmp_path / "model", loop=loop)
    return Assistant(ws, generator=str(model), settings=GenerationSettings(max_tokens=max_tokens, min_score=-1.0,
                                                                            check_shape=False, unknown_terms=-1,
                                                                            copy_numbers=False))


def test_a_grounded_answer_stops_where_the_model_starts_copying_document_markup(tmp_path, smollm_tokenizer_path,
                                                                                tiny_embedder_path):
    assistant = _assistant(tmp_path, smollm_tokenizer_path, tiny_embedder_path,
                           'Refunds take fourteen days [1]. The document n="2" title')
    try:
        rag = assistant.answer("How long do refunds take?", mode="rag")
        plain = assistant.answer("How long do refunds take?", mode="prompt")
    finally:
        assistant.close()
    assert rag.text == "Refunds take fourteen days [1]. The document"
    assert 'n="' not in rag.text
    assert 'n="2"' in plain.text  # without documents in the prompt there is no markup to guard


def test_a_looping_answer_ends_after_its_third_repetition_instead_of_at_max_tokens(tmp_path, smollm_tokenizer_path,
                                                                                  tiny_embedder_path):
    assistant = _assistant(tmp_path, smollm_tokenizer_path, tiny_embedder_path, " - 10.", loop=True, max_tokens=60)
    try:
        answer = assistant.answer("What is the limit?", mode="rag")
    finally:
        assistant.close()
    assert answer.text.count("10.") == 3
    assert answer.tokens < 60
