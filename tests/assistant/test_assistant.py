"""Assistant: the four modes, citations, the no-evidence answer, budgets, history, adapters."""

from __future__ import annotations

import threading

import pytest

from assistant.assistant import Assistant, CitationFilter
from assistant.errors import AssistantError
from assistant.records import Answer, GenerationSettings
from retrieval.citations import GROUNDED_SYSTEM_PROMPT, NO_ANSWER, strip_citations


@pytest.fixture
def parrot(workspace, docs_kb, parrot_llama_path, fast_settings):
    assistant = Assistant(workspace, generator=str(parrot_llama_path), settings=fast_settings)
    yield assistant
    assistant.close()


def test_rag_answer_resolves_real_citation_and_drops_fabricated_one(parrot, parrot_answer):
    answer = parrot.answer("When does the ferry leave?", mode="rag")
    assert answer.dropped_citations == [9]
    assert "[9]" not in answer.text and "[1]" in answer.text
    assert answer.text == strip_citations(parrot_answer, [9])
    assert [c.n for c in answer.citations] == [1]
    assert answer.citations[0].chunk == answer.context[0].chunk
    assert answer.tokens > 0 and answer.finish_reason == "stop"
