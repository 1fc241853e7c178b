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


def _lora(ws, base, name):
    """A LoRA adapter (zero B) saved with its manifest, as finetune/ saves one."""
    from datetime import datetime, timezone

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.adapters import write_manifest

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])).save_pretrained(ws.adapters_dir / name)
    write_manifest(ws.adapters_dir / name, {"name": name, "method": "lora", "base": str(base),
                                            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def test_the_page_opens_on_rag_unless_the_kb_has_its_own_adapter(ui_workspace, office_kb, open_page, citing_llama_path):
    from finetune.adapters import set_kb_default

    _lora(ui_workspace, citing_llama_path, "general")
    _lora(ui_workspace, citing_llama_path, "office-own")
    at = open_page("chat")
    assert at.sidebar.selectbox(key="chat_mode").value == "rag"  # an adapter trained elsewhere is not applied unasked

    set_kb_default(ui_workspace, "default", "office-own", {"delta": 0.2})
    at = open_page("chat")
    assert at.sidebar.selectbox(key="chat_mode").value == "hybrid"
    assert at.sidebar.selectbox(key="chat_adapter").value == "office-own"
