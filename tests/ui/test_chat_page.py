"""The Chat page (AppTest): streamed answers, citations that open their passage, history, clear messages."""

from __future__ import annotations


def _errors(at) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _ask(at, question: str):
    at.chat_input(key="chat_input").set_value(question).run()
    assert not _errors(at)
    return at


def test_without_a_knowledge_base_the_page_says_how_to_create_one(ui_workspace, open_page):
    at = open_page("chat")
    assert not _errors(at)
    assert any("no knowledge base yet" in i.value for i in at.info)
    assert at.sidebar.selectbox(key="chat_mode").options == ["prompt — base model alone"]


def test_empty_knowledge_base_is_announced(ui_workspace, open_page):
    from retrieval.knowledge_base import KnowledgeBase

    KnowledgeBase.open(ui_workspace.kb_path("default"), embedder=ui_workspace.config()["models"]["embedder"],
                       create=True).close()
    at = open_page("chat")
    assert any("is empty" in i.value and "ragtune ingest" in i.value for i in at.info)


def test_answer_is_streamed_with_a_citation_that_expands_to_its_passage(ui_workspace, office_kb, open_page):
    at = open_page("chat")
    assert at.sidebar.selectbox(key="chat_mode").value == "rag"
    _ask(at, "When did the Harbour office open?")
    assert any("[1]" in m.value for m in at.markdown), [m.value for m in at.markdown]
    citation = next(e for e in at.expander if e.label.startswith("[1] "))
    assert "Harbour office" in citation.label
    passage = " ".join(m.value for m in citation.markdown)
    assert "opened in 1998" in passage
    assert any(str(office_kb) in c.value for c in citation.caption)
    assert citation.get("download_button"), "the cited document can be downloaded"


def test_retrieved_context_lists_chunks_with_scores(ui_workspace, office_kb, open_page):
    at = open_page("chat")
    at.sidebar.toggle(key="chat_show_context").set_value(True).run()
    _ask(at, "When is the office open?")
    context = next(e for e in at.expander if e.label.startswith("Retrieved context"))
    table = context.dataframe[0].value
    assert list(table["rank"]) == sorted(table["rank"]) and table["score"].notna().all()
    assert table["passage"].str.contains("office").any()


def test_history_is_kept_across_questions_and_cleared_on_request(ui_workspace, office_kb, open_page):
    at = open_page("chat")
    _ask(at, "When did the office open?")
    _ask(at, "And on Saturdays?")
    users = [m.markdown[0].value for m in at.chat_message if m.name == "user"]
    assert users == ["When did the office open?", "And on Saturdays?"]
    at.sidebar.button[0].click().run()
    assert not [m for m in at.chat_message]


def test_open_at_passage_shows_the_document_with_the_passage_marked(ui_workspace, office_kb, open_page):
    at = open_page("chat")
    _ask(at, "When did the Harbour office open?")
    citation = next(e for e in at.expander if e.label.startswith("[1] "))
    citation.button[0].click().run()
    assert not _errors(at)
    shown = " ".join(h.proto.body for h in at.get("html"))
    assert "<mark id='cited'>" in shown and "opened in 1998" in shown
