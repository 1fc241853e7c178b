"""Chat: streamed answers in any of the four modes, with numbered citations that open their passage."""

from __future__ import annotations

import html

import streamlit as st

from assistant.assistant import default_route
from ui.rendering import safe_markdown
from ui.session import choose_kb, get_assistant, open_kb, passage_markdown, reported_errors, start_warm_up, workspace

MODE_HELP = {
    "hybrid": "adapter + retrieved passages",
    "rag": "base model + retrieved passages",
    "tuned": "adapter alone, no retrieval",
    "prompt": "base model alone",
}
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


def _document_path(kb, source: str):
    """The stored source file of a cited document, or None when it is gone."""
    path = kb.document_path(source)
    return path if path is not None and path.is_file() else None


@st.dialog("Source document", width="large")
def _open_document(source: str, path: str, start: int, end: int) -> None:
    """The document's extracted text with the cited passage highlighted."""
    from pathlib import Path

    from ingest.loaders import load_document

    with reported_errors(f"cannot open {source}"):
        text = load_document(Path(path), source).text
        st.caption(f"{source} · characters {start}–{end} of {len(text)}")
        before, passage, after = text[:start], text[start:end], text[end:]
        body = (html.escape(before[-3000:]) + "<mark id='cited'>" + html.escape(passage) + "</mark>"
                + html.escape(after[:3000]))
        with st.container(height=480):
            st.html(f"<div style='white-space: pre-wrap; font-size: 0.9rem'>{body}</div>")


def _citation_title(citation) -> str:
    chunk = citation.chunk
    parts = [f"[{citation.n}] {chunk.title or chunk.source}"]
    if chunk.page:
        parts.append(f"p. {chunk.page}")
    if chunk.heading:
        parts.append(f"§ {chunk.heading}")
    return " · ".join(parts)


def render_citations(answer, kb, key: str) -> None:
    """One expander per cited passage: the passage, where it is, and the source to open or download."""
    for citation in answer.citations:
        chunk = citation.chunk
        with st.expander(_citation_title(citation)):
            st.markdown(passage_markdown(chunk.text, quote=True))
            where = f"`{chunk.source}`" + (f", page {chunk.page}" if chunk.page else "") \
                + (f", section *{chunk.heading}*" if chunk.heading else "")
            st.caption(f"From {where}, characters {chunk.start}–{chunk.end}")
            path = _document_path(kb, chunk.source) if kb is not None else None
            if path is None:
                st.caption("The source file is no longer on disk.")
                continue
            left, right = st.columns(2)
            if left.button("Open at passage", key=f"{key}-open-{citation.n}", icon=":material/open_in_new:"):
                _open_document(chunk.source, str(path), chunk.start, chunk.end)
            if path.stat().st_size <= MAX_DOWNLOAD_BYTES:
                right.download_button("Download source", data=path.read_bytes(), file_name=path.name,
                                      key=f"{key}-dl-{citation.n}", icon=":material/download:")


def render_context(answer) -> None:
    """The retrieved chunks with their scores, best first."""
    if not answer.context:
        st.caption("No passages were retrieved for this answer.")
        return
    rows = [{"rank": h.rank, "score": round(float(h.score), 4), "document": h.chunk.title or h.chunk.source,
             "page": h.chunk.page, "section": h.chunk.heading, "passage": h.chunk.text} for h in answer.context]
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"score": st.column_config.NumberColumn(format="%.4f"),
                                "passage": st.column_config.TextColumn(width="large")})


def render_answer_details(answer, kb, key: str, show_context: bool) -> None:
    """Everything under an answer's text: what produced it, its citations and (optionally) its context."""
    bits = [answer.mode + (f" · {answer.adapter}" if answer.adapter else "")]
    if getattr(answer, "latency_s", None) is not None:
        bits.append(f"{answer.latency_s:.1f} s")
    if getattr(answer, "tokens", None):
        bits.append(f"{answer.tokens} tokens")
    if getattr(answer, "dropped_citations", None):
        bits.append(f"{len(answer.dropped_citations)} citation(s) to passages that were not retrieved removed")
    unknown = (getattr(answer, "extra", None) or {}).get("unknown_terms")
    if unknown:
        bits.append("not generated: no document mentions " + ", ".join(f"'{t}'" for t in unknown))
    elif getattr(answer, "finish_reason", "") == "no_evidence":
        bits.append("not generated: no document is close enough to the question")
    st.caption(" · ".join(bits))
    render_citations(answer, kb, key)
    if show_context and answer.mode in ("rag", "hybrid"):
        with st.expander(f"Retrieved context ({len(answer.context)})", icon=":material/manage_search:"):
            render_context(answer)


ws = workspace()
st.title("Chat")
kb_name = choose_kb(ws)
kb = None
documents = 0
if kb_name is not None:
    with reported_errors(f"knowledge base {kb_name!r}"):
        kb = open_kb(ws, kb_name)
        documents = len(kb.list_documents())

assistant = get_assistant(ws, kb_name)
pairs: list[tuple[str, str | None]] = []
with reported_errors("assistant"):
    pairs = list(assistant.modes_available())
if kb is None:  # nothing to retrieve from
    pairs = [(m, a) for m, a in pairs if m not in ("rag", "hybrid")]
modes = list(dict.fromkeys(m for m, _ in pairs))
if not modes:
    st.stop()
order = [m for m in ("hybrid", "rag", "tuned", "prompt") if m in modes]
# The KB's own adapter (``ragtune adapt`` made it its default after it beat RAG-only there) answers
# in hybrid; without one the page opens on rag: an adapter trained elsewhere is never applied unasked.
start, own = default_route(ws, kb_name) if kb_name else ("prompt", None)
if (start, own) not in pairs:
    start, own = ("rag" if "rag" in order else order[0]), None
mode = st.sidebar.selectbox("Mode", order, index=order.index(start),
                            format_func=lambda m: f"{m} — {MODE_HELP.get(m, '')}", key="chat_mode")
adapter = None
if mode in ("tuned", "hybrid"):
    names = [a for m, a in pairs if m == mode]
    adapter = st.sidebar.selectbox("Adapter", names, index=names.index(own) if own in names else 0,
                                   format_func=lambda a: f"{a} (this KB's own)" if a == own else a,
                                   key="chat_adapter")
if not any(m in ("tuned", "hybrid") for m in modes):
    st.sidebar.caption("Train an adapter on the **Fine-tune** page to unlock the tuned and hybrid modes.")
show_context = st.sidebar.toggle("Show retrieved context", value=False, key="chat_show_context")
with st.sidebar.expander("Generation settings", icon=":material/tune:"):
    defaults = assistant.settings
    overrides = {
        "k": st.slider("Passages retrieved (k)", 0, 12, defaults.k, key="chat_k"),
        "max_tokens": st.slider("Max new tokens", 16, 1024, defaults.max_tokens, step=16, key="chat_max_tokens"),
        "temperature": st.slider("Temperature (0 = greedy)", 0.0, 1.5, float(defaults.temperature), step=0.1,
                                 key="chat_temperature"),
    }

conversations = st.session_state.setdefault("chat_history", {})
history: list[dict] = conversations.setdefault(kb_name or "", [])
if st.sidebar.button("Clear conversation", icon=":material/delete_sweep:", disabled=not history):
    history.clear()
    st.rerun()

if kb_name is None:
    st.info("There is no knowledge base yet. Create one and add documents on the **Knowledge base** page "
            "(or `ragtune ingest PATH`). Until then only the prompt and tuned modes can answer.",
            icon=":material/info:")
elif kb is not None and documents == 0:
    st.info(f"The knowledge base **{kb_name}** is empty: add documents on the **Knowledge base** page "
            f"(or `ragtune ingest PATH --kb {kb_name}`). Until then rag and hybrid answers will say they don't know.",
            icon=":material/info:")

for i, message in enumerate(history):
    with st.chat_message(message["role"]):
        # an answer may repeat what a document told the model to write: nothing in it may load
        st.markdown(safe_markdown(message["content"]) if message["role"] == "assistant" else message["content"])
        if message.get("answer") is not None:
            render_answer_details(message["answer"], kb, f"m{i}", show_context)

loading = st.empty()
if not start_warm_up(assistant):
    loading.caption(":material/hourglass_top: Loading the model in the background: the first answer waits for it.")
question = st.chat_input("Ask a question about your documents", key="chat_input")
if question:
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        final: dict = {}
        with reported_errors("could not answer"):
            with st.spinner("Loading the model (first question only)…"):
                assistant.warm_up()  # instant once loaded: the assistant is cached across reruns
            turns = [{"role": m["role"], "content": m["content"]} for m in history]

            # st.write_stream renders the raw text as Markdown: the whole answer so far is re-rendered
            # made safe instead, since an image's syntax can arrive split across pieces
            shown = st.empty()
            with st.spinner("Thinking…", show_time=True):
                said = ""
                for item in assistant.stream(question, mode=mode, adapter=adapter, history=turns, **overrides):
                    if isinstance(item, str):
                        said += item
                        shown.markdown(safe_markdown(said))
                    else:
                        final["answer"] = item
        loading.empty()
        answer = final.get("answer")
        if answer is not None:
            render_answer_details(answer, kb, f"m{len(history) + 1}", show_context)
            history.append({"role": "user", "content": question})
            history.append({"role": "assistant", "content": answer.text, "answer": answer})
