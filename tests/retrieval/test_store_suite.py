"""One suite, both stores: SQLite + FAISS and PostgreSQL + pgvector (a real server from pgserver).

Every test here runs once per store through the public ``KnowledgeBase`` interface; what a store
does differently (the one-writer lock of SQLite) is asserted where it differs.
"""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import KBLockedError, RetrievalError
from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings
from retrieval.records import Chunk
from retrieval.store import DocumentWrite

DIM = 16
ROOT = Path(__file__).resolve().parents[2]
STORES = ["sqlite", "postgres"]


def doc(source: str, texts: list[str], seed: int = 0, dim: int = DIM) -> DocumentWrite:
    rng = np.random.default_rng(int(hashlib.sha256(f"{source}/{seed}".encode()).hexdigest()[:8], 16))
    vecs = rng.standard_normal((len(texts), dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [Chunk(chunk_id=f"{source}#{seed}#{i}", source=source, title=source, text=t, start=0, end=len(t),
                    heading=f"Part {i}", position=i) for i, t in enumerate(texts)]
    return DocumentWrite(source=source, title=source, format="txt", sha256=f"{source}-{seed}", chunks=chunks, vectors=vecs)


def write(kb: KnowledgeBase, docs=(), removals=()) -> int:
    with kb.writer() as w:
        return w.write(upserts=list(docs), removals=list(removals))


def state(kb: KnowledgeBase) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for chunk in kb.iter_chunks():
        out.setdefault(chunk.source, []).append(chunk.text)
    return out


def settings_for(store: str, request, **kw) -> KnowledgeBaseSettings:
    if store == "sqlite":
        return KnowledgeBaseSettings(**kw)
    return KnowledgeBaseSettings(store="postgres", dsn=request.getfixturevalue("pg_dsn"),
                                 pg_schema=request.getfixturevalue("pg_schema"), **kw)


@pytest.fixture(params=STORES)
def store(request) -> str:
    return request.param


@pytest.fixture
def kb(store, request, workspace):
    """An empty KB on ``store`` with vectors written directly (no model)."""
    base = KnowledgeBase.open(workspace.kb_path("s"), embedder="no-model-needed", create=True,
                              settings=settings_for(store, request))
    yield base
    base.close()


@pytest.fixture
def text_kb(store, request, workspace, tiny_embedder_path):
    """An empty KB on ``store`` with the tiny embedder (for searches by query text)."""
    base = KnowledgeBase.open(workspace.kb_path("t"), embedder=tiny_embedder_path, create=True,
                              settings=settings_for(store, request))
    yield base
    base.close()


CORPUS = {
    "/docs/refunds.md": ["Refunds are issued within 14 days of purchase.",
                         "Gift cards cannot be refunded under any circumstances."],
    "/docs/office.txt": ["The office opened in 1998 in Lisbon.", "It moved to Porto in 2010."],
    "/other/ferry.md": ["The ferry leaves the harbour at seven every weekday morning."],
    "/d%/x_y.md": ["Wildcard folders hold the tram timetable."],
}


def fill(kb: KnowledgeBase) -> None:
    with kb.writer() as w:
        w.write(upserts=[DocumentWrite(source=s, title=s, format="txt", sha256=s, vectors=kb.embedder.embed_documents(t),
                                       chunks=[Chunk(chunk_id=f"{s}#{i}", source=s, title=s, text=x, start=0, end=len(x),
                                                     position=i) for i, x in enumerate(t)])
                         for s, t in CORPUS.items()])


# -- writing and reading ---------------------------------------------------------------------

def test_a_write_is_read_back_with_its_provenance_in_source_then_position_order(kb):
    write(kb, [doc("/b", ["beta 0", "beta 1"]), doc("/a", ["alpha 0"])])
    chunks = list(kb.iter_chunks())
    assert [(c.source, c.position, c.text, c.heading) for c in chunks] == [
        ("/a", 0, "alpha 0", "Part 0"), ("/b", 0, "beta 0", "Part 0"), ("/b", 1, "beta 1", "Part 1")]
    assert [d.source for d in kb.list_documents()] == ["/a", "/b"]
    assert kb.document_chunk_ids("/b") == ["/b#0#0", "/b#0#1"]
    assert [c.chunk_id for c in kb.get_chunks(["/b#0#1", "nope", "/a#0#0"])] == ["/b#0#1", "/a#0#0"]
    stats = kb.stats()
    assert (stats["documents"], stats["chunks"], stats["vectors"], stats["dimension"]) == (2, 3, 3, DIM)
    assert kb.check() == []


def test_replacing_and_removing_documents_leaves_no_trace_of_old_chunks(kb):
    write(kb, [doc("/a", ["alpha old 0", "alpha old 1", "alpha old 2"]), doc("/b", ["beta"])])
    write(kb, [doc("/a", ["alpha new"], seed=1)], removals=["/b"])
    assert state(kb) == {"/a": ["alpha new"]}
    assert kb.stats()["chunks"] == 1 and kb.check() == []
    assert kb.search("beta", mode="bm25") == [] and kb.search("old", mode="bm25") == []


def test_ingest_by_content_hash_skips_unchanged_files_and_replaces_changed_ones(text_kb, tmp_path):
    from ingest.pipeline import ingest_paths, remove_documents

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The ferry leaves the harbour at seven.", encoding="utf-8")
    (folder / "b.txt").write_text("Refunds are issued within 14 days.", encoding="utf-8")
    first = ingest_paths(text_kb, [folder], progress=False)
    assert len(first.added) == 2
    again = ingest_paths(text_kb, [folder], progress=False)
    assert len(again.unchanged) == 2 and not again.added and not again.updated
    (folder / "a.txt").write_text("The tram depot is next to the station.", encoding="utf-8")
    changed = ingest_paths(text_kb, [folder], progress=False)
    assert len(changed.updated) == 1 and len(changed.unchanged) == 1
    assert text_kb.search("ferry harbour", mode="bm25") == []
    assert text_kb.search("tram depot", mode="bm25")[0].chunk.source == str(folder / "a.txt")
    remove_documents(text_kb, [str(folder / "b.txt")])
    assert [d.source for d in text_kb.list_documents()] == [str(folder / "a.txt")]
    assert text_kb.check() == []


def test_vectors_of_another_dimension_are_refused_and_nothing_is_written(kb):
    write(kb, [doc("/a", ["alpha"])])
    with pytest.raises(RetrievalError, match="dimension 8 but this knowledge base holds 16-dimensional"):
        write(kb, [doc("/b", ["beta"]), doc("/c", ["gamma"], dim=8)])
    assert state(kb) == {"/a": ["alpha"]} and kb.check() == []


def test_a_write_naming_a_document_twice_is_refused(kb):
    with pytest.raises(ValueError, match="names a document twice"):
        write(kb, [doc("/a", ["x"]), doc("/a", ["y"], seed=1)])
    assert state(kb) == {}


# -- searching -------------------------------------------------------------------------------

def test_dense_search_ranks_a_chunk_first_for_its_own_text(text_kb):
    fill(text_kb)
    hits = text_kb.search("The office opened in 1998 in Lisbon.", k=3, mode="dense")
    assert hits[0].chunk.text == "The office opened in 1998 in Lisbon."
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_text_search_matches_stemmed_keywords_with_positive_descending_scores(text_kb):
    fill(text_kb)
    hits = text_kb.search("gift cards refunding", k=5, mode="bm25")
    assert hits[0].chunk.text.startswith("Gift cards")
    assert all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.chunk.source for h in hits} == {"/docs/refunds.md"}


def test_hybrid_search_fuses_both_rankings(text_kb):
    fill(text_kb)
    hits = text_kb.search("ferry harbour", k=3, mode="hybrid")
    assert hits[0].chunk.source == "/other/ferry.md"
    assert [h.rank for h in hits] == [1, 2, 3]


@pytest.mark.parametrize("query", ['"unbalanced', "a AND OR NOT b", "NEAR(x y)", "col:value", "*", "'; DROP TABLE x; --",
                                   "a & b | !c <-> d", "back\\slash", "ünïcödé wörds", "((("])
def test_query_syntax_in_the_text_never_raises(text_kb, query):
    fill(text_kb)
    assert isinstance(text_kb.search(query, mode="hybrid"), list)


def test_a_query_of_stopwords_only_searches_without_error(text_kb):
    fill(text_kb)
    assert isinstance(text_kb.search("the of and", mode="bm25"), list)


@pytest.mark.parametrize("kwargs, message", [
    ({"query": "  "}, "query is empty"), ({"query": "x", "k": 0}, "k must be"),
    ({"query": "x", "mode": "fuzzy"}, "unknown search mode"), ({"query": "x", "mmr": 1.5}, "between 0 and 1"),
])
def test_bad_search_arguments_are_user_errors(text_kb, kwargs, message):
    with pytest.raises(RetrievalError, match=message):
        text_kb.search(**kwargs)


def test_source_prefix_limits_every_mode_and_its_wildcards_are_literal(text_kb):
    fill(text_kb)
    for mode in ("dense", "bm25", "hybrid"):
        hits = text_kb.search("ferry harbour office refunds", k=10, mode=mode, source_prefix="/docs/")
        assert hits and all(h.chunk.source.startswith("/docs/") for h in hits), mode
    assert {h.chunk.source for h in text_kb.search("tram timetable office", k=10, mode="hybrid", source_prefix="/d%")} \
        == {"/d%/x_y.md"}
    assert text_kb.search("office", mode="bm25", source_prefix="/do_s") == []


def test_mmr_diversifies_hits(text_kb):
    text = "The harbour office sells ferry tickets to the islands."
    with text_kb.writer() as w:
        w.write(upserts=[DocumentWrite(source=s, title=s, format="txt", sha256=s, vectors=text_kb.embedder.embed_documents([t]),
                                       chunks=[Chunk(chunk_id=s, source=s, title=s, text=t, start=0, end=len(t), position=0)])
                         for s, t in {"/a": text, "/b": text, "/c": "Ferry tickets are also sold online."}.items()])
    assert {h.chunk.source for h in text_kb.search(text, k=2, mode="dense")} == {"/a", "/b"}
    assert "/c" in {h.chunk.source for h in text_kb.search(text, k=2, mode="dense", mmr=0.3)}


def test_searching_an_empty_kb_returns_no_hits(text_kb):
    assert text_kb.search("anything", mode="hybrid") == []


def test_another_open_kb_sees_a_write_at_its_next_search(text_kb):
    fill(text_kb)
    other = KnowledgeBase.open(text_kb.path)
    assert other.search("tram depot station", mode="bm25", source_prefix="/new") == []
    with text_kb.writer() as w:
        t = "The tram depot is next to the station."
        w.write(upserts=[DocumentWrite(source="/new", title="t", format="txt", sha256="n", vectors=text_kb.embedder.embed_documents([t]),
                                       chunks=[Chunk(chunk_id="n", source="/new", title="t", text=t, start=0, end=len(t), position=0)])],
                removals=["/other/ferry.md"])
    assert other.search("The tram depot is next to the station.", k=1, mode="dense")[0].chunk.source == "/new"
    assert all(h.chunk.source != "/other/ferry.md" for h in other.search("ferry harbour", k=10))
    other.close()


# -- crashes ---------------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    from test_store_suite import doc
    from retrieval.knowledge_base import KnowledgeBase
    kb = KnowledgeBase.open({path!r})
    with kb.writer() as w:
        w.write(upserts=[doc("/a", ["alpha new 0", "alpha new 1"], seed=1), doc("/c", ["gamma"])], removals=["/b"])
    print("DONE", flush=True)
""")
OLD = {"/a": ["alpha old 0", "alpha old 1", "alpha old 2"], "/b": ["beta 0", "beta 1"]}
NEW = {"/a": ["alpha new 0", "alpha new 1"], "/c": ["gamma"]}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["after-delete", "mid-write", "before-commit"])
def test_kill_9_during_a_write_leaves_the_old_state_and_a_clean_store(kb, store, point):
    write(kb, [doc("/a", OLD["/a"]), doc("/b", OLD["/b"])])
    script = _WRITER.format(root=str(ROOT), tests=str(Path(__file__).parent), path=str(kb.path))
    env = dict(os.environ, RAGTUNE_TEST_PAUSE_AT=point)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "paused at" not in (line := proc.stderr.readline()):
            assert line, f"writer exited before pausing: rc={proc.wait()}"
        reader = KnowledgeBase.open(kb.path)  # readers are not blocked by the paused writer
        assert state(reader) == OLD
        assert reader.search("beta", mode="bm25")
        if store == "sqlite":  # one writer per folder
            with pytest.raises(KBLockedError, match=f"locked by pid {proc.pid}"):
                with reader.writer():
                    pass
        else:  # many writers: one of another document is not held up by the paused one
            write(reader, [doc("/z", ["zeta"])])
            assert "/z" in state(reader)
        reader.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = KnowledgeBase.open(kb.path)
    assert {s: t for s, t in state(after).items() if s != "/z"} == OLD
    assert after.check() == []
    write(after, [doc("/a", NEW["/a"], seed=1), doc("/c", NEW["/c"])], removals=["/b", "/z"])
    assert state(after) == NEW and after.check() == []
    after.close()


def test_the_langchain_vector_store_adds_searches_and_deletes_with_metadata(text_kb):
    from retrieval.langchain_adapter import KnowledgeBaseVectorStore

    store = KnowledgeBaseVectorStore(text_kb)
    texts = ["The ferry leaves at seven.", "Tickets cost four euros.", "The cafe closes at noon."]
    assert store.add_texts(texts, metadatas=[{"page": 2}, {}, {"lang": "en"}], ids=["t1", "t2", "t3"]) == ["t1", "t2", "t3"]
    assert store.similarity_search("Tickets cost four euros.", k=1, mode="dense")[0].id == "t2"
    assert store.similarity_search("cafe noon", k=1, mode="bm25")[0].metadata["lang"] == "en"
    assert store.delete(["t1"]) is True and store.get_by_ids(["t1"]) == []
    assert text_kb.stats()["chunks"] == 2 and text_kb.check() == []
