"""The RAFT-style grounding builder on a real (tiny-embedder) knowledge base."""

import hashlib
import re

import numpy as np
import pytest

from evaluation.metrics import contains_answer
from evaluation.qa import QAItem
from finetune.errors import DatasetError
from finetune.grounding import (GroundingSettings, LeakageGuard, build_grounding_set, cloze_question, extract_facts, keyword_question,
                                quote_answer, wh_question,
                                write_grounding_set)
from retrieval.citations import NO_ANSWER, grounded_messages
from retrieval.focus import text_units
from retrieval.knowledge_base import KnowledgeBase
from retrieval.records import Chunk
from retrieval.store import DocumentWrite

DOCS = {
    "oslo.md": "The Oslo office opened in March 2019 with 12 staff. Maria Lund leads the Oslo office and its team. "
               "The annual travel budget is $45,000 per team.",
    "desk.md": "The help desk opens at 8:30 am on weekdays and closes early on Fridays. Payroll tickets use the code "
               "HR-2041 in every region. About 35% of staff cycle to work in summer.",
    "history.md": "The company was founded in 1987 by Tobias Quellan in Bergen. The first ship was named Heron Gift "
                  "and carried 40 passengers. The fleet grew to 9 ships by the year 2004.",
    "garden.md": "Remote work is allowed 3 days per week for most roles. The rooftop garden was planted in 2021 by "
                 "Nordic Builders AS. Lunch is served from 11:45 am in the canteen.",
    "fares.md": "A single adult ticket costs €19.80 on the main route. A dog ticket costs €2.50 on every route. "
                "Season passes cost €310 for twelve months of travel.",
}


def make_kb(path, embedder_path, docs=DOCS) -> KnowledgeBase:
    """A real knowledge base written through the store (one chunk per sentence pair)."""
    kb = KnowledgeBase.open(path, embedder=embedder_path, create=True)
    writes = []
    for source, text in docs.items():
        sentences = re.split(r"(?<=\.) ", text)
        chunks, pos = [], 0
        for i in range(0, len(sentences), 2):
            part = " ".join(sentences[i:i + 2])
            start = text.index(part, pos)
            cid = hashlib.sha256(f"{source}:{i}".encode()).hexdigest()[:16]
            chunks.append(Chunk(cid, source, source.removesuffix(".md").title(), part, start, start + len(part),
                                position=i // 2))
            pos = start
        vectors = kb.embedder.embed_documents([c.text for c in chunks])
        writes.append(DocumentWrite(source, source, "md", hashlib.sha256(text.encode()).hexdigest(), chunks,
                                    np.asarray(vectors)))
    with kb.writer() as writer:
        writer.write(writes)
    return kb


@pytest.fixture
def kb(tmp_path, tiny_embedder_path):
    with make_kb(tmp_path / "kb", tiny_embedder_path) as kb:
        yield kb


def _context_texts(example):
    user = example.messages[-2]["content"]
    return dict(re.findall(r'<document n="(\d+)"[^>]*>\n(.*?)\n</document>', user, re.S))


def test_oracle_position_matches_the_cited_number(kb):
    examples = build_grounding_set(kb, 30, k=3, retrieval_mode="bm25", abstain_share=0.2, seed=1)
    answered = [e for e in examples if e.kind != "abstain"]
    assert answered
    for ex in answered:
        docs = _context_texts(ex)
        assert f"[{ex.oracle_position}]" in ex.answer
        assert ex.span in docs[str(ex.oracle_position)]
        assert set(docs) <= {"1", "2", "3"}  # focused: a document with no chosen sentence is left out
        assert ex.messages[-1] == {"role": "assistant", "content": ex.answer}
    whole = build_grounding_set(kb, 30, k=3, retrieval_mode="bm25", abstain_share=0.2, seed=1, focus_sentences=0)
    assert all(len(_context_texts(e)) == 3 for e in whole)


def test_focused_prompts_keep_few_sentences_and_the_answer(kb):
    examples = build_grounding_set(kb, 30, k=3, retrieval_mode="bm25", abstain_share=0.0, seed=5, focus_sentences=2)
    assert examples
    for ex in examples:
        docs = _context_texts(ex)
        assert sum(len(text_units(t)) for t in docs.values()) == 2
        assert ex.span in docs[str(ex.oracle_position)]


def test_oracle_lands_at_different_positions(kb):
    examples = build_grounding_set(kb, 40, k=4, retrieval_mode="bm25", abstain_share=0.0, seed=0)
    assert len({e.oracle_position for e in examples}) >= 3


def test_abstention_share_and_abstentions_have_no_oracle(kb):
    examples = build_grounding_set(kb, 40, k=3, retrieval_mode="bm25", abstain_share=0.25, seed=2)
    abstain = [e for e in examples if e.kind == "abstain"]
    assert len(abstain) == 10
    for ex in abstain:
        assert ex.answer == NO_ANSWER and ex.oracle_position is None
        assert not any(contains_answer(text, ex.span) for text in _context_texts(ex).values())


def test_prompt_is_exactly_the_inference_prompt(kb):
    ex = build_grounding_set(kb, 5, k=2, seed=3)[0]
    chunks = kb.get_chunks(ex.context_chunk_ids)
    focused = kb.focus(ex.question, chunks, GroundingSettings().focus_sentences)  # the assistant's focus
    assert ex.messages[:-1] == grounded_messages(ex.question, focused)


def test_eval_questions_and_answers_do_not_leak(kb):
    evals = [QAItem(id="e1", question="When did the Oslo office open?", answers=("March 2019",)),
             QAItem(id="e2", question="What does a dog ticket cost?", answers=("€2.50", "2.50")),
             QAItem(id="e3", question="Who founded the company?", answers=("Tobias Quellan",))]
    examples = build_grounding_set(kb, 40, k=3, retrieval_mode="bm25", seed=4, exclude=evals)
    for ex in examples:
        text = (ex.question + " " + ex.answer).lower()
        assert "march 2019" not in text and "2.50" not in text and "quellan" not in text
    without = build_grounding_set(kb, 40, k=3, retrieval_mode="bm25", seed=4)
    assert any("march 2019" in (e.question + e.answer).lower() for e in without)


def test_without_holding_out_answers_only_the_eval_questions_stay_out(kb):
    evals = [QAItem(id="e1", question="When did the Oslo office open?", answers=("March 2019",)),
             QAItem(id="e2", question="Who leads the Oslo office and its team?", answers=("Maria Lund",))]
    examples = build_grounding_set(kb, 60, k=3, retrieval_mode="bm25", seed=4, exclude=evals, abstain_share=0.0,
                                   hold_out_answers=False)
    assert any(e.span == "March 2019" for e in examples)  # the answering sentence is studied...
    assert not any(LeakageGuard(evals).repeats(e.question) for e in examples)  # ...never by the eval's question
    assert "Who leads the Oslo office and its team?" not in {e.question for e in examples}
    held = build_grounding_set(kb, 60, k=3, retrieval_mode="bm25", seed=4, exclude=evals, abstain_share=0.0)
    assert not any("march 2019" in (e.question + e.answer).lower() for e in held)


def test_same_seed_same_set_and_other_seed_differs(kb):
    a = build_grounding_set(kb, 12, k=3, retrieval_mode="bm25", seed=5)
    b = build_grounding_set(kb, 12, k=3, retrieval_mode="bm25", seed=5)
    c = build_grounding_set(kb, 12, k=3, retrieval_mode="bm25", seed=6)
    assert [e.messages for e in a] == [e.messages for e in b]
    assert [e.messages for e in a] != [e.messages for e in c]


def test_questions_ask_for_the_span(kb):
    chunk = Chunk("x", "d.md", "D", "Maria Lund leads the Oslo office and its team.", 0, 47)
    fact = extract_facts(chunk)[0]
    assert fact.span == "Maria Lund"
    assert wh_question(fact) == "Who leads the Oslo office and its team?"
    assert cloze_question(fact) == "Fill in the blank: _____ leads the Oslo office and its team."


def test_written_set_is_chat_messages_jsonl(kb, tmp_path):
    import json

    path = write_grounding_set(build_grounding_set(kb, 4, k=2), tmp_path / "g.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]) == {"messages"}
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]


def test_empty_knowledge_base_is_a_dataset_error(tmp_path, tiny_embedder_path):
    with KnowledgeBase.open(tmp_path / "empty", embedder=tiny_embedder_path, create=True) as empty:
        with pytest.raises(DatasetError, match="empty"):
            build_grounding_set(empty, 5)


def test_settings_reject_bad_shares():
    with pytest.raises(ValueError):
        GroundingSettings(abstain_share=1.5)


def test_source_prefix_limits_oracles_and_distractors(kb):
    examples = build_grounding_set(kb, 10, k=2, retrieval_mode="bm25", source_prefix="fares", seed=7)
    chunk_ids = {cid for e in examples for cid in e.context_chunk_ids}
    assert {c.source for c in kb.get_chunks(sorted(chunk_ids))} == {"fares.md"}


def test_answer_template_wraps_answers_but_not_the_abstention(kb):
    examples = build_grounding_set(kb, 20, k=2, retrieval_mode="bm25", abstain_share=0.5,
                                   answer_template="Hello! {answer}\n- Desk", seed=8)
    assert all(e.answer.startswith("Hello! ") and e.answer.endswith("\n- Desk") for e in examples if e.kind != "abstain")
    assert all(e.answer == NO_ANSWER for e in examples if e.kind == "abstain")


def test_k_min_varies_the_number_of_documents(kb):
    examples = build_grounding_set(kb, 30, k=3, k_min=1, retrieval_mode="bm25", abstain_share=0.0, seed=9)
    assert {len(e.context_chunk_ids) for e in examples} == {1, 2, 3}
    assert all(f"[{e.oracle_position}]" in e.answer for e in examples)


def test_table_rows_become_facts_named_by_their_header():
    text = ("| Route | Adult single |\n|---|---|\n| R2 Port Aldric to Brannock Isle | €19.80 |\n\n"
            "| Role | Name |\n|---|---|\n| Chief Executive | Ilse Varnhorst |\n\n"
            "Leave Port Aldric | 07:00 | 11:00\nLeave Brannock pier | 09:00 | 13:00")
    facts = extract_facts(Chunk("t", "t.md", "T", text, 0, len(text)))
    assert [(f.span, wh_question(f)) for f in facts] == [
        ("€19.80", "What is the Adult single for R2 Port Aldric to Brannock Isle?"),
        ("Ilse Varnhorst", "Who is the Chief Executive?")]  # the headerless timetable gives none
    assert quote_answer(facts[0], 2) == "The Adult single for R2 Port Aldric to Brannock Isle is €19.80 [2]."


def test_keyword_questions_keep_only_content_words_near_the_span():
    chunk = Chunk("k", "k.md", "K", "Maria Lund leads the Oslo office and its team.", 0, 47)
    assert keyword_question(extract_facts(chunk)[0]) == "Who leads Oslo office?"
