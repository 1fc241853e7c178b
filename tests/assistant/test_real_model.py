"""The assistant on the real embedded models (slow): int8 fidelity, a grounded answer, the no-evidence check."""

from __future__ import annotations

import pytest

from assistant.assistant import Assistant
from assistant.generation import LocalBackend
from assistant.records import GenerationSettings
from retrieval.citations import NO_ANSWER

pytestmark = pytest.mark.slow

DOCS = {
    "ferry.md": "# Ferry timetable\n\nThe ferry leaves the harbour at seven every weekday morning and docks at "
                "Brannock at noon. On Sundays there is no ferry.",
    "refunds.md": "# Refunds\n\nRefunds are issued within 14 days of purchase. Gift cards cannot be refunded.",
}


@pytest.fixture(scope="module")
def real_assistant(tmp_path_factory, real_generator_path):
    from ingest.pipeline import ingest_paths
    from ragtune.workspace import Workspace
    from retrieval.knowledge_base import KnowledgeBase

    root = tmp_path_factory.mktemp("real")
    ws = Workspace.open(root / "home")
    ws.config_path.write_text(f"models:\n  generator: {real_generator_path}\n")
    for name, text in DOCS.items():
        (root / name).write_text(text)
    with KnowledgeBase.open(ws.kb_path("default"), create=True) as kb:
        assert not ingest_paths(kb, [root / n for n in DOCS], progress=False).failed
    assistant = Assistant(ws, settings=GenerationSettings(max_tokens=40))
    yield assistant
    assistant.close()


def test_int8_greedy_output_matches_bf16(real_assistant, real_generator_path):
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Explain how photosynthesis works."}]
    settings = GenerationSettings(max_tokens=24)
    texts = {}
    for quantize in ("int8", "none"):
        backend = LocalBackend(real_assistant.ws, str(real_generator_path), dtype="bfloat16", quantize=quantize)
        *_, result = backend.stream(messages, settings)
        texts[quantize] = result.text
        backend.close()
    assert texts["int8"] == texts["none"]
    assert "photosynthesis" in texts["int8"].lower()


def test_rag_answer_uses_the_retrieved_fact(real_assistant):
    answer = real_assistant.answer("When does the ferry leave the harbour?", mode="rag")
    assert "seven" in answer.text.lower()
    assert answer.context[0].chunk.source.endswith("ferry.md")
    assert answer.tokens > 0 and not answer.abstained


def test_off_topic_question_gets_no_answer_at_the_default_threshold(real_assistant):
    assert GenerationSettings().min_score == real_assistant.settings.min_score
    off_topic = real_assistant.answer("Who won the 2018 football World Cup?", mode="rag")
    assert off_topic.text == NO_ANSWER and off_topic.tokens == 0
    on_topic = real_assistant.answer("Can gift cards be refunded?", mode="rag")
    assert on_topic.tokens > 0
