"""The store's generations, snapshots, repair and crash safety, with random vectors (no model)."""

import hashlib
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import retrieval.store as store
from retrieval.errors import KBLockedError
from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings
from retrieval.records import Chunk
from retrieval.store import DocumentWrite, VectorIndex

DIM = 16
ROOT = Path(__file__).resolve().parents[2]


def doc(source: str, texts: list[str], seed: int = 0) -> DocumentWrite:
    rng = np.random.default_rng(int(hashlib.sha256(f"{source}/{seed}".encode()).hexdigest()[:8], 16))
    vecs = rng.standard_normal((len(texts), DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    chunks = [Chunk(chunk_id=f"{source}#{seed}#{i}", source=source, title=source, text=t, start=0, end=len(t), position=i)
              for i, t in enumerate(texts)]
    return DocumentWrite(source=source, title=source, format="txt", sha256=f"{source}-{seed}", chunks=chunks, vectors=vecs)


def write(kb: KnowledgeBase, docs=(), removals=(), compact: bool = False) -> int:
    with kb.writer() as w:
        generation = w.write(upserts=list(docs), removals=list(removals))
        return w.compact() if compact else generation


def fresh_index(kb: KnowledgeBase) -> VectorIndex:
    index = VectorIndex(kb.path, kb.settings.index, kb.settings.nprobe)
    conn = store.connect(kb.path / store.DB_NAME)
    conn.execute("BEGIN")
    index.sync(conn)
    conn.execute("COMMIT")
    conn.close()
    return index


def stored_ids(kb: KnowledgeBase) -> set[int]:
    conn = sqlite3.connect(kb.path / store.DB_NAME)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM chunks")}
    finally:
        conn.close()


@pytest.fixture
def kb(workspace):
    base = KnowledgeBase.open(workspace.kb_path("s"), embedder="no-model-needed", create=True)
    yield base
    base.close()


def test_each_write_is_one_new_generation(kb):
    assert write(kb, [doc("/a", ["one", "two"])]) == 1
    assert write(kb, [doc("/b", ["three"])], removals=["/a"]) == 2
    assert kb.stats()["generation"] == 2
    assert [d.source for d in kb.list_documents()] == ["/b"]


def test_small_writes_do_not_rewrite_the_faiss_file(kb):
    write(kb, [doc(f"/d{i}", ["x", "y"]) for i in range(20)])
    assert list(kb.path.glob("vectors.*.faiss")) == []
    assert kb.stats()["snapshot"] == 0


def test_snapshot_plus_delta_gives_the_index_a_full_rebuild_gives(kb, monkeypatch):
    monkeypatch.setattr(store, "COMPACT_MIN_ROWS", 30)
    write(kb, [doc(f"/d{i}", [f"t{i}-{j}" for j in range(4)]) for i in range(10)])  # 40 rows: compacts
    assert kb.stats()["snapshot"] == 1
    write(kb, [doc("/d3", ["replaced"], seed=1), doc("/new", ["n1", "n2"])], removals=["/d7"])  # small delta
    assert kb.stats()["snapshot"] == 1
    index = fresh_index(kb)
    assert set(index.ids().tolist()) == stored_ids(kb)
    conn = sqlite3.connect(kb.path / store.DB_NAME)
    rows = conn.execute("SELECT id, vector FROM vectors").fetchall()
    conn.close()
    ids = np.array([r[0] for r in rows])
    vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    query = vecs[5]
    expected = ids[np.argsort(-(vecs @ query))[:5]].tolist()
    assert [i for i, _ in index.search(query, 5)] == expected
    assert kb.check() == []


def test_compaction_keeps_only_the_current_and_previous_snapshot(kb):
    for n in range(4):
        write(kb, [doc(f"/d{n}", ["a", "b"])], compact=True)
    meta = kb.stats()
    files = sorted(p.name for p in kb.path.glob("vectors.*.faiss"))
    assert files == sorted([f"vectors.{meta['snapshot']}.faiss", f"vectors.{meta['snapshot'] - 2}.faiss"])
    assert list(kb.path.glob(".vectors.*.tmp")) == []


def test_a_lost_snapshot_is_rebuilt_from_sqlite_and_reported_once(kb):
    generation = write(kb, [doc("/a", ["one", "two", "three"])], compact=True)
    (kb.path / f"vectors.{generation}.faiss").unlink()
    reader = KnowledgeBase.open(kb.path)
    assert reader.search("two", mode="bm25")  # readers keep working meanwhile
    problems = kb.check()
    assert len(problems) == 1
    assert f"vectors.{generation}.faiss is missing; rebuilt the index from the 3 stored vectors (no re-embedding)" in problems[0]
    assert kb.check() == []
    assert set(fresh_index(kb).ids().tolist()) == stored_ids(kb)


def test_a_stale_snapshot_is_detected_and_rebuilt(kb):
    old = write(kb, [doc("/a", ["one"])], compact=True)
    new = write(kb, [doc("/b", ["two", "three"])], compact=True)
    (kb.path / f"vectors.{new}.faiss").write_bytes((kb.path / f"vectors.{old}.faiss").read_bytes())
    problems = kb.check()
    assert len(problems) == 1 and "is stale" in problems[0]
    assert kb.check() == []


def test_check_names_chunks_without_vectors(kb):
    write(kb, [doc("/a", ["one", "two"])])
    conn = sqlite3.connect(kb.path / store.DB_NAME)
    conn.execute("DELETE FROM vectors WHERE id = (SELECT min(id) FROM vectors)")
    conn.commit()
    conn.close()
    problems = kb.check()
    assert "1 chunks have no vector; re-ingest their documents" in problems
    assert "1 chunks have no vector in the FAISS index" in problems


def test_loading_searching_and_checking_never_unpickle(kb, monkeypatch):
    write(kb, [doc("/a", ["one", "two"])], compact=True)
    write(kb, [doc("/b", ["three"])])

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used on a load path")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    reader = KnowledgeBase.open(kb.path)
    assert reader.search("three", mode="bm25")
    assert reader.stats()["vectors"] == 3
    assert reader.check() == []


def test_ivf_index_above_its_threshold_searches_and_removes(workspace, monkeypatch):
    monkeypatch.setattr(store, "IVF_MIN_VECTORS", 2000)
    kb = KnowledgeBase.open(workspace.kb_path("ivf"), embedder="no-model-needed", create=True,
                            settings=KnowledgeBaseSettings(index="ivf", nprobe=8))
    write(kb, [doc(f"/d{i}", [f"t{j}" for j in range(50)]) for i in range(50)], compact=True)
    assert kb.stats()["index"].startswith("ivf (")
    index = fresh_index(kb)
    probe = doc("/d7", [f"t{j}" for j in range(50)]).vectors[3]
    top_id, score = index.search(probe, 1)[0]
    assert score == pytest.approx(1.0, abs=1e-5)
    assert kb.get_chunks(["/d7#0#3"])[0].text == "t3"
    write(kb, removals=["/d7"])
    assert set(fresh_index(kb).ids().tolist()) == stored_ids(kb)
    assert top_id not in stored_ids(kb)
    assert kb.check() == []


# -- kill -9 during a write ---------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import logging, sys
    sys.path.insert(0, {root!r})
    logging.basicConfig(level=logging.WARNING)
    import retrieval.store as store
    from retrieval.knowledge_base import KnowledgeBase
    from tests.retrieval.test_store import doc
    store.COMPACT_MIN_ROWS = {compact_min}
    kb = KnowledgeBase.open({path!r})
    with kb.writer() as w:
        w.write(upserts=[doc("/a", ["alpha new 0", "alpha new 1"], seed=1), doc("/c", ["gamma"])], removals=["/b"])
    print("DONE", flush=True)
""")
OLD = {"/a": ["alpha old 0", "alpha old 1", "alpha old 2"], "/b": ["beta 0", "beta 1"]}
NEW = {"/a": ["alpha new 0", "alpha new 1"], "/c": ["gamma"]}


def state(kb: KnowledgeBase) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for chunk in kb.iter_chunks():
        out.setdefault(chunk.source, []).append(chunk.text)
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point, compact", [("after-delete", False), ("mid-write", False), ("before-commit", False),
                                            ("after-snapshot", True)])
def test_kill_9_during_a_write_leaves_the_old_state_and_a_clean_store(kb, point, compact):
    write(kb, [doc("/a", OLD["/a"]), doc("/b", OLD["/b"])], compact=True)
    script = _WRITER.format(root=str(ROOT), path=str(kb.path), compact_min=0 if compact else 10**9)
    env = dict(os.environ, RAGTUNE_TEST_PAUSE_AT=point)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "paused at" not in (line := proc.stderr.readline()):
            assert line, f"writer exited before pausing: rc={proc.wait()}"
        reader = KnowledgeBase.open(kb.path)  # readers are not blocked by the paused writer
        assert state(reader) == OLD
        assert reader.search("beta", mode="bm25")
        with pytest.raises(KBLockedError, match=f"locked by pid {proc.pid}"):
            with reader.writer():
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = KnowledgeBase.open(kb.path)
    assert state(after) == OLD
    assert after.check() == []
    assert set(fresh_index(after).ids().tolist()) == stored_ids(after)
    write(after, [doc("/a", NEW["/a"], seed=1), doc("/c", NEW["/c"])], removals=["/b"], compact=compact)
    assert state(after) == NEW and after.check() == []


@pytest.mark.timeout(60)
def test_an_uninterrupted_writer_process_reaches_the_new_state(kb):
    write(kb, [doc("/a", OLD["/a"]), doc("/b", OLD["/b"])])
    script = _WRITER.format(root=str(ROOT), path=str(kb.path), compact_min=10**9)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    assert out.stdout.strip() == "DONE", out.stderr
    assert state(kb) == NEW and kb.check() == []


def cap_database_growth(monkeypatch) -> None:
    """Every new connection may not grow kb.sqlite: SQLite's own limit raises its real SQLITE_FULL
    ("database or disk is full"), as a full disk does."""
    real_connect = store.connect

    def capped(db):
        conn = real_connect(db)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return conn

    monkeypatch.setattr(store, "connect", capped)


def test_a_write_that_finds_the_disk_full_is_one_store_full_error_and_keeps_the_old_state(kb, monkeypatch):
    write(kb, [doc("/d/kept.txt", ["kept text"])])
    cap_database_growth(monkeypatch)
    big = doc("/d/big.txt", [f"chunk {i} " + "x" * 2000 for i in range(200)])
    with pytest.raises(store.StoreFullError, match="nothing of this write was stored") as caught:
        write(kb, [big])
    assert str(caught.value.__context__) == "database or disk is full"  # not "cannot rollback - no transaction"
    monkeypatch.undo()
    assert [d.source for d in kb.list_documents()] == ["/d/kept.txt"]
    assert kb.check() == []
