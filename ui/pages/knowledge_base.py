"""Knowledge base: create, upload and ingest files, list, delete and re-ingest documents, try searches."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from ragtune.workspace import WorkspaceError, check_name
from ui.session import (KB_KEY, choose_kb, kb_exists, open_kb, passage_markdown, reported_errors, save_upload,
                        workspace)

SEARCH_MODES = ["hybrid", "dense", "bm25"]


def _display_source(ws, source: str) -> str:
    """Sources saved from uploads are shown relative to the workspace."""
    try:
        return str(Path(source).resolve().relative_to(ws.home))
    except ValueError:
        return source


def ingest_with_progress(ws, kb, paths: list[Path], labels: list[str]) -> dict:
    """Ingest ``paths`` one by one under a progress bar (chunking from config.yaml, as ``ragtune ingest``);
    returns the merged report as a dict."""
    from ingest.chunking import ChunkingSettings
    from ingest.limits import IngestLimits
    from ingest.pipeline import ingest_paths

    settings = ws.settings(ChunkingSettings, "chunking")
    merged = {"added": [], "updated": [], "unchanged": [], "removed": [], "failed": []}
    bar = st.progress(0.0, text="Starting…")
    started = time.monotonic()
    for i, (path, label) in enumerate(zip(paths, labels)):
        eta = ""
        if i:
            remaining = (time.monotonic() - started) / i * (len(paths) - i)
            eta = f" · about {remaining:.0f} s left"
        bar.progress(i / len(paths), text=f"Ingesting {label} ({i + 1}/{len(paths)}){eta}")
        report = ingest_paths(kb, [str(path)], progress=False, settings=settings,
                              limits=ws.settings(IngestLimits, "ingest")).to_dict()
        for key in merged:
            merged[key].extend(report.get(key) or [])
    bar.progress(1.0, text=f"Done: {len(paths)} file(s) in {time.monotonic() - started:.1f} s")
    return merged


def show_report(report: dict) -> None:
    """The outcome of an ingest or removal: counts, then one line per failed file with its reason."""
    counts = {k: len(report.get(k) or []) for k in ("added", "updated", "unchanged", "removed", "failed")}
    text = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "nothing to do"
    (st.warning if counts["failed"] else st.success)(text.capitalize() + ".", icon=":material/task_alt:")
    for failure in report.get("failed") or []:
        source = failure.get("source") if isinstance(failure, dict) else getattr(failure, "source", failure)
        reason = failure.get("reason") if isinstance(failure, dict) else getattr(failure, "reason", "")
        st.error(f"**{Path(str(source)).name}**: {reason}", icon=":material/error:")


ws = workspace()
st.title("Knowledge base")

with st.sidebar.expander("New knowledge base", icon=":material/add:"), st.form("kb_create_form", border=False):
    new_name = st.text_input("Name", placeholder="team-docs", key="kb_new_name",
                             help="1-64 letters, digits, '.', '_' or '-'")
    if st.form_submit_button("Create"):
        try:
            check_name(new_name, "knowledge base")
        except WorkspaceError as exc:
            st.error(str(exc))
        else:
            created = False
            with reported_errors(f"creating {new_name!r}"), st.spinner("Creating…"):
                existed = kb_exists(ws, new_name)
                open_kb(ws, new_name, create=True)
                created = True
            if created:
                st.session_state[KB_KEY] = new_name
                st.session_state.pop("kb_picker", None)
                st.session_state["kb_notice"] = f"{new_name!r} already existed; selected it." if existed else \
                    f"Created {new_name!r}: now upload documents to it."
                st.rerun()

kb_name = choose_kb(ws)
if kb_name is None:
    st.info("Create a knowledge base in the sidebar (**New knowledge base**), then upload documents to it.",
            icon=":material/info:")
    st.stop()

if notice := st.session_state.pop("kb_notice", None):
    st.toast(notice, icon=":material/check:")
kb = None
with reported_errors(f"knowledge base {kb_name!r}"):
    kb = open_kb(ws, kb_name)
if kb is None:
    st.stop()

documents = kb.list_documents()
stats = kb.stats()
cols = st.columns(3)
cols[0].metric("Documents", len(documents))
cols[1].metric("Chunks", stats.get("chunks", sum(d.chunks for d in documents)))
cols[2].metric("Size on disk", stats.get("size_on_disk", "—"))
last_ingest = max((d.ingested_at[:16].replace("T", " ") for d in documents), default="never")
st.caption(f"Embedder `{stats.get('embedder')}` · index {stats.get('index')} · generation {stats.get('generation')} "
           f"· last ingest {last_ingest} UTC · `{kb.path}`")

last = st.session_state.get("kb_last_report")
if last and last[0] == kb_name:
    show_report(last[1])

docs_tab, add_tab, search_tab = st.tabs(["Documents", "Add documents", "Search playground"])

with add_tab:
    from ingest.loaders import SUPPORTED_EXTENSIONS

    st.caption(f"Files are saved under the workspace and ingested; supported: "
               f"{', '.join(sorted(e.lstrip('.') for e in SUPPORTED_EXTENSIONS))}. "
               "Unchanged files are skipped, changed ones replace their old passages.")
    generation = st.session_state.setdefault("kb_upload_generation", 0)
    uploads = st.file_uploader("Upload files", accept_multiple_files=True, key=f"kb_upload_{generation}")
    if st.button("Ingest", type="primary", disabled=not uploads, key="kb_ingest", icon=":material/upload:"):
        saved = [save_upload(ws, kb_name, f.name, f.getvalue()) for f in uploads]
        with reported_errors("ingest"):
            report = ingest_with_progress(ws, kb, saved, [f.name for f in uploads])
            st.session_state["kb_last_report"] = (kb_name, report)
            st.session_state["kb_upload_generation"] = generation + 1  # empties the uploader
            st.rerun()

with docs_tab:
    if not documents:
        st.info("No documents yet: upload some in **Add documents**.")
    else:
        rows = [{"document": _display_source(ws, d.source), "title": d.title, "format": d.format, "chunks": d.chunks,
                 "pages": d.pages, "ingested": d.ingested_at[:19].replace("T", " ")} for d in documents]
        st.dataframe(rows, hide_index=True, width="stretch")
        by_label = {_display_source(ws, d.source): d.source for d in documents}
        chosen = st.multiselect("Select documents", list(by_label), key="kb_selected")
        left, right = st.columns(2)
        if left.button("Delete", disabled=not chosen, key="kb_delete", icon=":material/delete:"):
            from ingest.pipeline import remove_documents

            with reported_errors("delete"), st.spinner("Removing…"):
                report = remove_documents(kb, [by_label[c] for c in chosen]).to_dict()
                st.session_state["kb_last_report"] = (kb_name, report)
                st.session_state.pop("kb_selected", None)
                st.rerun()
        if right.button("Re-ingest", disabled=not chosen, key="kb_reingest", icon=":material/refresh:",
                        help="Read the files again: changed ones replace their passages, unchanged ones are skipped"):
            with reported_errors("re-ingest"):
                paths = [Path(by_label[c]) for c in chosen]
                st.session_state["kb_last_report"] = (kb_name, ingest_with_progress(ws, kb, paths, chosen))
                st.rerun()

with search_tab:
    query = st.text_input("Query", key="kb_query", placeholder="how do refunds work")
    left, right = st.columns(2)
    mode = left.segmented_control("Mode", SEARCH_MODES, default="hybrid", key="kb_search_mode") or "hybrid"
    k = right.slider("Results", 1, 20, 5, key="kb_search_k")
    if query:
        hits = []
        with reported_errors("search"):
            if mode != "bm25":
                with st.spinner("Loading the embedder…"):
                    kb.embedder.warm_up()  # once per process; not part of the query time below
            started = time.monotonic()
            hits = kb.search(query, k=k, mode=mode)
            st.caption(f"{len(hits)} passage(s) in {1000 * (time.monotonic() - started):.0f} ms ({mode})")
        for hit in hits:
            chunk = hit.chunk
            where = chunk.title or chunk.source
            where += f" · p. {chunk.page}" if chunk.page else ""
            where += f" · § {chunk.heading}" if chunk.heading else ""
            with st.expander(f"**{hit.rank}.** {where} — score {hit.score:.4f}", expanded=hit.rank <= 3):
                st.markdown(passage_markdown(chunk.text))
                st.caption(f"{_display_source(ws, chunk.source)}, characters {chunk.start}–{chunk.end}")
