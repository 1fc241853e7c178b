"""What every page shares: the workspace, the chosen knowledge base, and the heavy cached objects.

The generator and embedder load once per UI process (``st.cache_resource``) and stay resident
across reruns and pages; everything a page shows comes from the same package functions the
CLI calls. A user error from any package becomes one ``st.error`` line, as in the CLI.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from ragtune.workspace import DEFAULT_KB, Workspace, WorkspaceError
from ui.rendering import safe_markdown

log = logging.getLogger(__name__)

_WARMING: "weakref.WeakKeyDictionary[object, threading.Thread]" = weakref.WeakKeyDictionary()
KB_KEY = "ragtune_kb"  # session_state key of the knowledge base chosen in the sidebar
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def workspace() -> Workspace:
    """The workspace this UI serves (``$RAGTUNE_HOME``, set by ``ragtune ui``)."""
    return Workspace.open()


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean 'the user can fix this' (the CLI's list)."""
    from ragtune.cli import _user_errors

    return _user_errors()


@contextmanager
def reported_errors(what: str = ""):
    """Show a user error as one ``st.error`` line instead of a traceback; yields a flag dict."""
    outcome = {"failed": False}
    try:
        yield outcome
    except user_errors() as exc:  # noqa: B030 (a tuple of types computed at runtime)
        outcome["failed"] = True
        st.error(f"{what}: {exc}" if what else str(exc), icon=":material/error:")


def choose_kb(ws: Workspace, allow_missing: bool = False) -> str | None:
    """The sidebar's knowledge-base picker, shared by all pages; returns the chosen name (None if none exist)."""
    names = ws.kb_names()
    current = st.session_state.get(KB_KEY)
    if allow_missing and current and current not in names:
        names = sorted(names + [current])
    if not names:
        st.sidebar.caption("No knowledge base yet: create one on the **Knowledge base** page.")
        return None
    if current not in names:
        current = DEFAULT_KB if DEFAULT_KB in names else names[0]
    st.session_state[KB_KEY] = current
    chosen = st.sidebar.selectbox("Knowledge base", names, index=names.index(current), key="kb_picker")
    st.session_state[KB_KEY] = chosen
    return chosen


def sanitize_filename(name: str) -> str:
    """A safe file name for an upload: the base name only, unusual characters replaced by '_'."""
    base = Path(name.replace("\\", "/")).name
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem.strip("."):  # no extension, or a dot-file such as ".env"
        stem, ext = base, ""
    stem = _UNSAFE.sub("_", stem).strip("._-")[:100] or "upload"
    ext = _UNSAFE.sub("", ext)[:10]
    return f"{stem}.{ext}" if ext else stem


def passage_markdown(text: str, quote: bool = False) -> str:
    """A retrieved passage as Markdown, its headings as bold lines rather than page-sized titles, and
    its images and links inert (``ui.rendering.safe_markdown``)."""
    lines = [re.sub(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", r"**\1**", line) for line in safe_markdown(text).splitlines()]
    if not quote:
        return "\n".join(lines)
    return "\n".join(f"> {line}" if line.strip() else ">" for line in lines)


def uploads_dir(ws: Workspace, area: str) -> Path:
    """Where uploads for ``area`` (a KB name, or 'datasets', 'qa') are saved inside the workspace."""
    path = ws.home / "uploads" / area
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_upload(ws: Workspace, area: str, name: str, data: bytes) -> Path:
    """Write an uploaded file under the workspace with a sanitized name; an upload of the same name replaces it."""
    target = uploads_dir(ws, area) / sanitize_filename(name)
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def kb_exists(ws: Workspace, name: str) -> bool:
    """True if the knowledge base ``name`` has been created."""
    try:
        return ws.kb_path(name).is_dir()
    except WorkspaceError:
        return False


@st.cache_resource(show_spinner=False, max_entries=16)
def _knowledge_base(path: str):
    from retrieval.knowledge_base import KnowledgeBase

    return KnowledgeBase.open(path)


def open_kb(ws: Workspace, name: str, create: bool = False):
    """The knowledge base ``name`` (cached: it follows new ingests by itself); ``create`` makes it with
    the workspace's configured embedder."""
    from assistant.models import model_settings
    from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings

    path = ws.kb_path(name)
    if create and not KnowledgeBase.exists(path):  # as `ragtune ingest` creates one: config.yaml's models and kb
        KnowledgeBase.open(path, embedder=model_settings(ws).embedder, create=True,
                           settings=ws.settings(KnowledgeBaseSettings, "kb")).close()
    return _knowledge_base(str(path))


@st.cache_resource(show_spinner=False, max_entries=2)
def _backend(home: str):
    from assistant.generation import make_backend

    return make_backend(Workspace.open(home))


@st.cache_resource(show_spinner=False, max_entries=16)
def _assistant(home: str, kb: str):
    from assistant.assistant import Assistant

    assistant = Assistant(Workspace.open(home), kb=kb)
    assistant.backend = _backend(home)  # one resident generator for every knowledge base
    return assistant


def get_assistant(ws: Workspace, kb: str | None):
    """The assistant for ``kb`` (the generator loads once per UI process and is shared by all KBs and sessions)."""
    return _assistant(str(ws.home), kb or DEFAULT_KB)


def forget_assistants() -> None:
    """Drop the cached assistants (after an adapter was deleted): the next request reloads what it needs."""
    _assistant.clear()
    _backend.clear()


def start_warm_up(assistant) -> bool:
    """Load the generator (and embedder) on a background thread, once per backend; True when ready.

    The page stays usable while a model loads; a question asked meanwhile waits for it under a
    spinner (and shows the load error, if any, as one line).
    """
    thread = _WARMING.get(assistant.backend)
    if thread is None:
        def warm() -> None:
            try:
                assistant.warm_up()
            except Exception as exc:  # noqa: BLE001 (reported when a question calls warm_up again)
                log.warning("background warm-up failed: %s", exc)

        thread = threading.Thread(target=warm, name="ragtune-warm-up", daemon=True)
        _WARMING[assistant.backend] = thread
        thread.start()
    return not thread.is_alive()
