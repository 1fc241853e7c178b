"""The answer-shape check: a numeric question's answer is held back until a sentence of it holds a
number of the asked shape (a "who" question's, a name), and one without any is answered again from
the sentences that hold one."""

from __future__ import annotations

import logging

import pytest

from assistant.assistant import Assistant
from assistant.records import Answer, GenerationSettings
from tests.assistant.conftest import fill_docs_kb
from retrieval.citations import strip_citations


def test_an_answer_that_holds_the_asked_shape_stands(parrot_assistant, parrot_answer):
    *deltas, answer = list(parrot_assistant.stream("How many sailings leave each weekday?", mode="rag"))
    assert "".join(deltas) == answer.text == strip_citations(parrot_answer, [9])
    assert answer.extra["shape_retry"] is False and answer.to_dict()["shape_retry"] is False


def test_without_a_sentence_of_the_asked_shape_the_answer_stands(parrot_assistant, parrot_answer, caplog):
    with caplog.at_level(logging.INFO, logger="assistant.assistant"):
        answer = parrot_assistant.answer("What share of tickets are sold on board?", mode="rag")  # no percentage
    assert answer.text == strip_citations(parrot_answer, [9]) and not answer.extra["shape_retry"]
    assert "answering again" not in caplog.text


def test_an_answer_without_the_asked_shape_is_answered_again_from_sentences_that_hold_it(
        parrot_assistant, parrot_answer, caplog):
    question = "How much is a single ticket to the harbour?"
    with caplog.at_level(logging.INFO, logger="assistant.assistant"):
        *deltas, answer = list(parrot_assistant.stream(question, mode="rag"))
    assert answer.extra["shape_retry"] is True  # the parrot names no sum: answered again
    assert "answering again from the sentences that do" in caplog.text
    assert "writing only their numbers of that shape (€4.50)" in caplog.text  # not the seven of the timetable
    assert "".join(deltas) == answer.text == strip_citations(parrot_answer, [9])  # nothing shown twice
    assert answer.citations and answer.finish_reason == "stop"


def test_the_check_is_off_with_check_shape_false_and_for_modes_without_documents(parrot_assistant):
    off = parrot_assistant.answer("How much is a single ticket to the harbour?", mode="rag", check_shape=False)
    plain = parrot_assistant.answer("How much is a single ticket to the harbour?", mode="prompt")
    assert off.extra["shape_retry"] is False and plain.extra["shape_retry"] is False


def test_check_shape_must_be_a_boolean():
    with pytest.raises(ValueError, match="check_shape"):
        GenerationSettings(check_shape="yes")


def _parrot_on(root, docs: dict[str, str], embedder_path, parrot_path, **settings) -> Assistant:
    """The parrot over a fresh workspace whose 'default' KB holds ``docs`` ({file name: text})."""
    from ragtune.workspace import Workspace

    ws = Workspace.open(root / "home")
    fill_docs_kb(ws, embedder_path, root / "docs", docs).close()
    return Assistant(ws, generator=str(parrot_path),
                     settings=GenerationSettings(max_tokens=24, min_score=-1.0, unknown_terms=-1.0, **settings))


@pytest.fixture(scope="module")
def parrot_assistant(tmp_path_factory, tiny_embedder_path, parrot_llama_path):
    """The parrot on a KB where one sentence holds a sum and the others do not."""
    assistant = _parrot_on(tmp_path_factory.mktemp("shape-parrot"), {"ferry.md": (
        "# Ferry\n\nThe ferry leaves the harbour at seven every weekday morning. It docks at noon. "
        "A single ticket to the harbour costs €4.50. Tickets are sold on board.")},
        tiny_embedder_path, parrot_llama_path)
    yield assistant
    assistant.close()


def test_with_no_other_sentence_of_the_shape_shown_the_search_looks_deeper_in_the_same_documents(
        tmp_path, tiny_embedder_path, parrot_llama_path):
    """The chunk shown holds no sum; another chunk of its document does, and so does another
    document. The answer is asked again with the first added to the context, never the second."""
    assistant = _parrot_on(tmp_path, {
        "ferry.md": "# Ferry\n\n## Timetable\n\nThe weekday morning ferry leaves the harbour at seven. "
                    "It docks at noon.\n\n## Tickets\n\nA single ticket costs €4.50.",
        "cafe.md": "# Cafe\n\nA single coffee costs €2.00."}, tiny_embedder_path, parrot_llama_path, k=1)
    assert len(assistant.knowledge_base.search("ferry", k=10)) == 3  # one chunk a section
    try:
        question = "How much is the weekday morning ferry from the harbour?"
        first = assistant.retrieve(question, k=1)[0].chunk
        assert first.heading.endswith("Timetable")  # the search's best chunk names no sum
        answer = assistant.answer(question, mode="rag")
    finally:
        assistant.close()
    assert answer.extra["shape_retry"] is True
    assert [h.chunk.heading.split(" > ")[-1] for h in answer.context] == ["Timetable", "Tickets"]
    assert [h.rank for h in answer.context] == [1, 2]
    assert all(h.chunk.source.endswith("ferry.md") for h in answer.context)


def test_an_answer_naming_nobody_is_answered_again_from_the_sentence_that_names_someone(
        tmp_path, tiny_embedder_path, parrot_llama_path, caplog):
    assistant = _parrot_on(tmp_path, {"ferry.md": (
        "# Ferry\n\nThe ferry leaves the harbour at seven every weekday morning. It docks at noon. "
        "The ferry is run by Marta Quist. Tickets are sold on board.")}, tiny_embedder_path, parrot_llama_path)
    try:
        with caplog.at_level(logging.INFO, logger="assistant.assistant"):
            answer = assistant.answer("Who runs the ferry?", mode="rag")
    finally:
        assistant.close()
    assert answer.extra["shape_retry"] is True  # "The ferry leaves at seven" names nobody
    assert "holds no name: answering again" in caplog.text


def test_a_code_without_digits_asked_again_leaves_the_numbers_shown_writable(
        tmp_path, tiny_embedder_path, parrot_llama_path, caplog):
    """"TC-ISL" holds no digit: forbidding every number but its own would forbid them all."""
    assistant = _parrot_on(tmp_path, {"cards.md": (
        "# Cards\n\nThe ferry leaves the harbour at seven every weekday morning. It docks at noon. "
        "The product code of the islander card is TC-ISL. Cards are sold on board.")},
        tiny_embedder_path, parrot_llama_path)
    try:
        with caplog.at_level(logging.INFO, logger="assistant.assistant"):
            answer = assistant.answer("What is the product code of the islander card?", mode="rag")
    finally:
        assistant.close()
    assert answer.extra["shape_retry"] is True  # the parrot's answer holds no code
    assert "holds no code: answering again" in caplog.text
    assert "writing only their numbers of that shape (none found: any of theirs)" in caplog.text
