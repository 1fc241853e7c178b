"""The store under a knowledge base: SQLite is the truth, FAISS an index derived from it.

A knowledge-base folder holds::

    kb.sqlite            documents, chunks (with provenance), their vectors as float32 blobs,
                         an FTS5 table for BM25, and meta (generation, embedder, dimension)
    vectors.<G>.faiss    a FAISS snapshot of every vector as of generation G
    manifest.json        a readable summary, written by knowledge_base.py
    write.lock           the one writer's fcntl lock, holding its pid

Generations. Every write transaction bumps ``meta.generation``. A chunk row records the
generation that added it; a deleted chunk's id goes to ``tombstones`` with the generation that
deleted it. The snapshot of generation S plus the rows newer than S give the index of any later
generation, so a write rewrites the FAISS file only when that delta has grown large
(``compact``): adding one document to a 100k-chunk KB costs what it costs in an empty one.

Crash safety. A snapshot is written to a temp file, fsynced and renamed to
``vectors.<G>.faiss`` *before* the SQLite transaction that points ``meta.snapshot`` at it
commits; readers only open the file SQLite names, so a kill -9 anywhere leaves either the old
pointer (and a stray file the next writer deletes) or the new one. The previous snapshot is kept
for readers in flight; older ones are deleted. A snapshot that is missing, unreadable or of the
wrong size is rebuilt from the SQLite vectors (no re-embedding). Nothing here uses pickle.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from retrieval.errors import RetrievalError
from retrieval.records import Chunk, DocumentInfo

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_NAME = "kb.sqlite"
# Rewrite the FAISS snapshot once the rows it lacks exceed this many, or this share of it.
COMPACT_MIN_ROWS = 2048
COMPACT_RATIO = 0.10
# IVF needs ~39 training points per list; below this many vectors a flat (exact) index is used.
IVF_MIN_VECTORS = 6100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    pages INTEGER,
    chunks INTEGER NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    ingested_at TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',   -- the chunking settings that produced the chunks
    metadata TEXT                          -- free metadata (LangChain add_texts), JSON
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id; never reused
    chunk_id TEXT NOT NULL UNIQUE,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    page INTEGER,
    heading TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id, position);
CREATE INDEX IF NOT EXISTS chunks_by_generation ON chunks(generation);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    heading, text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, heading, text) VALUES ('delete', old.id, old.heading, old.text);
END;
"""

_CHUNK_COLUMNS = ("c.id, c.chunk_id, d.source, d.title, c.text, c.start_char, c.end_char, c.page, c.heading, "
                  "c.position")


@dataclass(frozen=True)
class DocumentWrite:
    """A document to insert or replace, with its chunks and their normalized vectors (one row each)."""

    source: str
    title: str
    format: str
    sha256: str
    chunks: list[Chunk]
    vectors: np.ndarray
    pages: int | None = None
    bytes: int = 0
    settings: dict = field(default_factory=dict)
    metadata: dict | None = None


def distinct_sources(upserts) -> list[str]:
    """The sources of a write's documents; a source named twice is a programming error (ValueError)."""
    sources = [u.source for u in upserts]
    if len(set(sources)) != len(sources):
        raise ValueError(f"a write names a document twice: {sorted({s for s in sources if sources.count(s) > 1})}")
    return sources


def connect(db: Path) -> sqlite3.Connection:
    """A connection in WAL mode (readers never block the writer), autocommit, usable across threads."""
    conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create_schema(conn: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Create the tables and the initial meta rows (existing values are kept)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _split_sql(_SCHEMA):
            conn.execute(statement)
        defaults = {"schema": str(SCHEMA_VERSION), "generation": "0", "snapshot": "0", "snapshot_count": "0",
                    "previous_snapshot": "0", **meta}
        conn.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", list(defaults.items()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _split_sql(script: str) -> list[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN ... END)."""
    statements, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if sqlite3.complete_statement(joined):
            statements.append(joined)
            buf = []
    return statements


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    """All meta rows as strings."""
    return dict(conn.execute("SELECT key, value FROM meta"))


def row_to_chunk(row) -> Chunk:
    """A ``chunks`` row selected with ``_CHUNK_COLUMNS`` (the leading int id is dropped)."""
    _, chunk_id, source, title, text, start, end, page, heading, position = row
    return Chunk(chunk_id=chunk_id, source=source, title=title, text=text, start=start, end=end, page=page,
                 heading=heading, position=position)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class StoreReader:
    """Read queries over one SQLite connection; call them inside ``snapshot()`` for one consistent view."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def meta(self) -> dict[str, str]:
        return read_meta(self.conn)

    def documents(self) -> list[DocumentInfo]:
        rows = self.conn.execute(
            "SELECT source, title, sha256, chunks, pages, ingested_at, format FROM documents ORDER BY source")
        return [DocumentInfo(*row) for row in rows]

    def document_state(self, source: str) -> tuple[str, dict] | None:
        """(sha256, chunking settings) of a stored document, or None."""
        row = self.conn.execute("SELECT sha256, settings FROM documents WHERE source = ?", (source,)).fetchone()
        return (row[0], json.loads(row[1] or "{}")) if row else None

    def metadata(self, sources: list[str]) -> dict[str, dict]:
        """Free metadata stored with these documents (only those that have some)."""
        out: dict[str, dict] = {}
        for start in range(0, len(sources), 500):
            part = sources[start:start + 500]
            rows = self.conn.execute(f"SELECT source, metadata FROM documents WHERE metadata IS NOT NULL AND "
                                     f"source IN ({','.join('?' * len(part))})", part)
            out.update((src, json.loads(meta)) for src, meta in rows)
        return out

    def chunk_ids_of(self, source: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT c.chunk_id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.source = ? "
            "ORDER BY c.position", (source,))]

    def sources(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT source FROM documents ORDER BY source")]

    def counts(self, vectors: bool = True) -> dict[str, int]:
        """Documents and chunks (index scans), and stored vectors if asked (a scan of every vector page)."""
        one = lambda sql: int(self.conn.execute(sql).fetchone()[0])  # noqa: E731
        out = {"documents": one("SELECT count(*) FROM documents"), "chunks": one("SELECT count(*) FROM chunks")}
        if vectors:
            out["vectors"] = one("SELECT count(*) FROM vectors")
        return out

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT NOT EXISTS (SELECT 1 FROM chunks)").fetchone()[0] == 1

    def chunks_by_ids(self, ids: Iterable[int]) -> dict[int, Chunk]:
        """Chunks keyed by their integer (FAISS) id; ids no longer stored are absent."""
        ids = [int(i) for i in ids]
        out: dict[int, Chunk] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            rows = self.conn.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
                f"WHERE c.id IN ({','.join('?' * len(part))})", part)
            out.update((row[0], row_to_chunk(row)) for row in rows)
        return out

    def ids_for_chunk_ids(self, chunk_ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for start in range(0, len(chunk_ids), 500):
            part = chunk_ids[start:start + 500]
            out.update(self.conn.execute(
                f"SELECT chunk_id, id FROM chunks WHERE chunk_id IN ({','.join('?' * len(part))})", part))
        return out

    def iter_chunks(self) -> Iterator[Chunk]:
        rows = self.conn.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
            "ORDER BY d.source, c.position")
        for row in rows:
            yield row_to_chunk(row)

    def ids_with_source_prefix(self, prefixes: list[str]) -> np.ndarray:
        where = " OR ".join("d.source LIKE ? ESCAPE '\\'" for _ in prefixes)
        rows = self.conn.execute(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where}",
            [_like_prefix(p) for p in prefixes])
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def all_chunk_ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM chunks")), dtype=np.int64)

    def vectors(self, ids: list[int], dimension: int) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start:start + 500]]
            rows = self.conn.execute(f"SELECT id, vector FROM vectors WHERE id IN ({','.join('?' * len(part))})", part)
            out.update((i, np.frombuffer(blob, dtype=np.float32)) for i, blob in rows)
        return out

    def document_frequencies(self, words: list[str], prefix: bool = False) -> tuple[int, dict[str, int]]:
        """(number of chunks, {word: chunks containing it}) through the full-text index (porter-stemmed).

        prefix: count chunks with any word that starts with the word's stem (depart: departure, departs)."""
        n_chunks = self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        counts = {}
        star = "*" if prefix else ""
        for word in words:
            if word and '"' not in word:
                counts[word] = self.conn.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?",
                                                 [f'"{word}"{star}']).fetchone()[0]
        return int(n_chunks), counts

    def bm25(self, fts_query: str, n: int, prefixes: list[str] | None = None) -> list[tuple[int, float]]:
        """(id, score) of the ``n`` best BM25 matches, score = -bm25() so higher is better."""
        if not fts_query:
            return []
        sql = "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?"
        params: list = [fts_query]
        if prefixes:
            where = " OR ".join("d.source LIKE ? ESCAPE '\\'" for _ in prefixes)
            sql += f" AND rowid IN (SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {where})"
            params += [_like_prefix(p) for p in prefixes]
        sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
        try:
            rows = self.conn.execute(sql, [*params, n]).fetchall()
        except sqlite3.OperationalError as exc:  # the query is sanitized; this is a guard, not a path
            raise RetrievalError(f"full-text search failed for {fts_query!r}: {exc}") from exc
        return [(int(i), -float(s)) for i, s in rows]

    def problems(self) -> list[str]:
        """Inconsistencies inside SQLite: integrity, chunks without vectors, orphans, FTS drift."""
        problems = []
        result = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            problems.append(f"kb.sqlite failed its integrity check: {result}")
        missing = self.conn.execute(
            "SELECT count(*) FROM chunks c LEFT JOIN vectors v ON v.id = c.id WHERE v.id IS NULL").fetchone()[0]
        if missing:
            problems.append(f"{missing} chunks have no vector; re-ingest their documents")
        orphans = self.conn.execute(
            "SELECT count(*) FROM vectors v LEFT JOIN chunks c ON c.id = v.id WHERE c.id IS NULL").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} orphan vectors have no chunk")
        stray = self.conn.execute(
            "SELECT count(*) FROM chunks c LEFT JOIN documents d ON d.id = c.document_id WHERE d.id IS NULL").fetchone()[0]
        if stray:
            problems.append(f"{stray} chunks belong to no document")
        wrong = self.conn.execute(
            "SELECT d.source, d.chunks, count(c.id) FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
            "GROUP BY d.id HAVING d.chunks != count(c.id)").fetchall()
        problems += [f"{src}: manifest says {want} chunks, {have} stored; re-ingest it" for src, want, have in wrong]
        dims = self.conn.execute("SELECT DISTINCT length(vector) FROM vectors").fetchall()
        if len(dims) > 1:
            problems.append(f"vectors of {len(dims)} different sizes are stored: {sorted(d[0] // 4 for d in dims)}")
        try:
            self.conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"the BM25 index disagrees with the chunks ({exc})")
        return problems


class VectorIndex:
    """The in-memory FAISS index of one process, kept at the generation its SQLite view says.

    ``sync`` loads the snapshot file named in meta (or rebuilds it from the stored vectors) and
    applies the rows added or deleted since; call it inside a read transaction.
    """

    def __init__(self, folder: Path, kind: str = "flat", nprobe: int = 32):
        self.folder = folder
        self.kind = kind
        self.nprobe = nprobe
        self.index = None
        self.applied = -1  # the generation the in-memory index reflects
        self.loaded_snapshot = -1
        self.problem: str | None = None  # why the last load had to rebuild, for check()

    # -- loading -------------------------------------------------------------------------
    def sync(self, conn: sqlite3.Connection) -> None:
        """Bring the index to the generation visible on ``conn`` (inside its current transaction)."""
        meta = read_meta(conn)
        generation, snapshot = int(meta["generation"]), int(meta["snapshot"])
        dimension = int(meta.get("dimension") or 0)
        if self.applied == generation and self.index is not None:
            return
        if self.index is None or self.applied < snapshot or self.loaded_snapshot > snapshot:
            self._load_snapshot(conn, snapshot, int(meta["snapshot_count"]), dimension)
            if self.index is None:
                return
        if self.applied < generation:
            self._apply_delta(conn, self.applied)
            self.applied = generation

    def _load_snapshot(self, conn, snapshot: int, expected: int, dimension: int) -> None:
        self.problem = None
        if dimension <= 0:
            self.index, self.applied, self.loaded_snapshot = None, -1, -1
            return
        if snapshot == 0:
            self.index = new_index(self.kind, dimension, conn)
            self.applied = self.loaded_snapshot = 0
            return
        path = snapshot_path(self.folder, snapshot)
        index = None
        try:
            index = read_index(path)
            if index.ntotal != expected or index.d != dimension:
                self.problem = (f"{path.name} is stale ({index.ntotal} vectors of dim {index.d}, expected {expected} "
                                f"of dim {dimension})")
                index = None
        except FileNotFoundError:
            self.problem = f"{path.name} is missing"
        except RuntimeError as exc:
            self.problem = f"{path.name} is unreadable ({str(exc).splitlines()[0][:120]})"
        if index is None:
            count = conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
            self.problem += f"; rebuilt the index from the {count} stored vectors (no re-embedding)"
            log.warning("%s", self.problem)
            self.index = new_index(self.kind, dimension, conn)
            self._apply_delta(conn, None)
            self.applied = self.loaded_snapshot = int(read_meta(conn)["generation"])
            return
        self.index = index
        self.applied = self.loaded_snapshot = snapshot

    def _apply_delta(self, conn, since: int | None) -> None:
        """Remove tombstoned ids and add the vectors of chunks newer than ``since`` (None: all)."""
        if since is not None:
            gone = np.fromiter((r[0] for r in conn.execute("SELECT id FROM tombstones WHERE generation > ?", (since,))),
                               dtype=np.int64)
            if len(gone):
                self.index.remove_ids(gone)
            rows = conn.execute("SELECT v.id, v.vector FROM vectors v JOIN chunks c ON c.id = v.id "
                                "WHERE c.generation > ? ORDER BY v.id", (since,))
        else:
            rows = conn.execute("SELECT id, vector FROM vectors ORDER BY id")
        while batch := rows.fetchmany(8192):
            ids = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
            vecs = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32).reshape(len(batch), -1)
            self.index.add_with_ids(vecs, ids)

    # -- queries -------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    def search(self, vector: np.ndarray, n: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(id, inner product) of the ``n`` nearest vectors, optionally only among ``allowed`` ids."""
        import faiss

        if self.index is None or self.index.ntotal == 0 or n <= 0:
            return []
        if allowed is not None and len(allowed) == 0:
            return []
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)) if allowed is not None else None
        if isinstance(self.index, _ivf_type()):
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe) if sel else faiss.SearchParametersIVF(nprobe=self.nprobe)
        else:
            params = faiss.SearchParameters(sel=sel) if sel else None
        # One query: OpenMP threads cost more in wake-ups than they save, and fight torch for the cores
        # (100k x 384 flat: 15 ms on one thread, ~100 ms on two busy cores). Per-thread setting, restored.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, ids = self.index.search(np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1),
                                            min(n, self.index.ntotal), params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def ids(self) -> np.ndarray:
        """Every id in the index (to compare with the chunks table)."""
        import faiss

        if self.index is None:
            return np.zeros(0, dtype=np.int64)
        if isinstance(self.index, _ivf_type()):
            inv = self.index.invlists
            parts = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
                     for i in range(self.index.nlist) if inv.list_size(i)]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def describe(self) -> str:
        if self.index is None:
            return "none yet (no vectors)"
        if isinstance(self.index, _ivf_type()):
            return f"ivf ({self.index.nlist} lists, nprobe {self.nprobe}, approximate)"
        return "flat (exact inner product)"


def _ivf_type():
    import faiss

    return faiss.IndexIVFFlat


def snapshot_path(folder: Path, generation: int) -> Path:
    return folder / f"vectors.{generation}.faiss"


def read_index(path: Path):
    """Read a FAISS index file (FAISS's own binary format; no pickle)."""
    import faiss

    if not path.exists():
        raise FileNotFoundError(path)
    return faiss.read_index(str(path))


def new_index(kind: str, dimension: int, conn: sqlite3.Connection | None = None):
    """An empty index: exact ``IndexIDMap2(IndexFlatIP)``, or a trained IVF when asked and large enough."""
    import faiss

    if kind == "ivf" and conn is not None:
        count = conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
        if count >= IVF_MIN_VECTORS:
            return _trained_ivf(conn, dimension, count)
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def _trained_ivf(conn, dimension: int, count: int):
    import faiss

    nlist = max(16, int(2 * math.sqrt(count)))
    # k-means on a sample: 64 points per list is plenty and keeps training to seconds at millions.
    sample = min(count, 64 * nlist)
    rows = conn.execute("SELECT vector FROM vectors ORDER BY random() LIMIT ?", (sample,)).fetchall()
    train = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), dimension)
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(train)
    return index


def write_snapshot(index, folder: Path, generation: int) -> Path:
    """Write ``index`` as ``vectors.<generation>.faiss``: temp file, fsync, rename, fsync the folder."""
    import faiss

    final = snapshot_path(folder, generation)
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    faiss.write_index(index, str(tmp))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(folder)
    return final


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StoreFullError(RetrievalError):
    """A write that found the disk full: rolled back whole, so the store holds what it held before."""


def _is_disk_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full", or a FAISS snapshot write that ran out of space."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class StoreWriter:
    """The write side: one transaction per ``write`` call, each bumping the generation.

    Only ever used while holding the KB's write lock (see ``KnowledgeBase.writer``).
    """

    def __init__(self, folder: Path, kind: str = "flat", nprobe: int = 32, crash_points: frozenset[str] = frozenset()):
        self.folder = folder
        self.kind = kind
        self.nprobe = nprobe
        self.conn = connect(folder / DB_NAME)
        self.reader = StoreReader(self.conn)
        self._crash_points = crash_points

    def close(self) -> None:
        self.conn.close()

    def write(self, upserts: list[DocumentWrite] = (), removals: list[str] = (), force_compact: bool = False) -> int:
        """Insert/replace ``upserts`` and delete the documents in ``removals`` atomically; return the generation."""
        from datetime import datetime, timezone

        sources = distinct_sources(upserts)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            meta = read_meta(conn)
            generation = int(meta["generation"]) + 1
            conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
            dimension = int(meta.get("dimension") or 0)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for source in [*removals, *(u.source for u in upserts)]:
                self._delete_document(source, generation)
            self._pause("after-delete")
            for doc in upserts:
                vecs = np.ascontiguousarray(doc.vectors, dtype=np.float32)
                if vecs.shape[0] != len(doc.chunks):
                    raise ValueError(f"{doc.source}: {len(doc.chunks)} chunks but {vecs.shape[0]} vectors")
                if dimension == 0 and len(vecs):
                    dimension = vecs.shape[1]
                    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('dimension', ?)", (str(dimension),))
                if len(vecs) and vecs.shape[1] != dimension:
                    raise RetrievalError(f"{doc.source}: vectors have dimension {vecs.shape[1]} but this knowledge base "
                                         f"holds {dimension}-dimensional vectors; use the embedder it was created with")
                self._insert_document(doc, vecs, generation, now)
                self._pause("mid-write")
            self._pause("before-commit")
            new_snapshot = None
            if force_compact or self._needs_compaction(conn):
                new_snapshot = self._compact(conn, generation)
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may already have rolled back (on SQLITE_FULL it can): a second ROLLBACK
            # raises "no transaction is active" and buries the real error under it.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _is_disk_full(exc):
                raise StoreFullError(f"knowledge base '{self.folder.name}': nothing of this write was stored, the disk "
                                     f"(or SQLite's size limit) is full at {self.folder}; free space and run it "
                                     "again (what was stored before stays readable)") from None
            raise
        if new_snapshot is not None:
            self._delete_old_snapshots()
        return generation

    def compact(self) -> int:
        """Write a fresh snapshot of the current state (a generation with no data change)."""
        return self.write(force_compact=True)

    # -- internals -----------------------------------------------------------------------
    def _delete_document(self, source: str, generation: int) -> None:
        row = self.conn.execute("SELECT id FROM documents WHERE source = ?", (source,)).fetchone()
        if row is None:
            return
        self.conn.execute("INSERT OR REPLACE INTO tombstones(id, generation) SELECT id, ? FROM chunks WHERE document_id = ?",
                          (generation, row[0]))
        self.conn.execute("DELETE FROM chunks WHERE document_id = ?", (row[0],))  # vectors cascade, FTS by trigger
        self.conn.execute("DELETE FROM documents WHERE id = ?", (row[0],))

    def _insert_document(self, doc: DocumentWrite, vecs: np.ndarray, generation: int, now: str) -> None:
        cur = self.conn.execute(
            "INSERT INTO documents(source, title, format, sha256, pages, chunks, bytes, ingested_at, settings, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.source, doc.title, doc.format, doc.sha256, doc.pages, len(doc.chunks), doc.bytes, now,
             json.dumps(doc.settings, sort_keys=True), json.dumps(doc.metadata) if doc.metadata is not None else None))
        document_id = cur.lastrowid
        self.conn.executemany(
            "INSERT INTO chunks(chunk_id, document_id, position, start_char, end_char, page, heading, text, generation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(c.chunk_id, document_id, c.position, c.start, c.end, c.page, c.heading, c.text, generation)
             for c in doc.chunks])
        ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE document_id = ? ORDER BY position",
                                               (document_id,))]
        self.conn.executemany("INSERT INTO vectors(id, vector) VALUES (?, ?)",
                              [(i, vecs[n].tobytes()) for n, i in enumerate(ids)])

    def _needs_compaction(self, conn) -> bool:
        meta = read_meta(conn)
        snapshot, count = int(meta["snapshot"]), int(meta["snapshot_count"])
        if snapshot and not snapshot_path(self.folder, snapshot).exists():
            return True  # repair a lost snapshot at the first chance
        delta = conn.execute("SELECT (SELECT count(*) FROM chunks WHERE generation > ?) + "
                             "(SELECT count(*) FROM tombstones WHERE generation > ?)", (snapshot, snapshot)).fetchone()[0]
        return delta > max(COMPACT_MIN_ROWS, COMPACT_RATIO * count)

    def _compact(self, conn, generation: int) -> int | None:
        meta = read_meta(conn)
        if not int(meta.get("dimension") or 0):
            return None
        index = VectorIndex(self.folder, self.kind, self.nprobe)
        index.sync(conn)  # the snapshot plus this transaction's own, uncommitted rows
        if self._wants_retrain(index, conn):
            index.index = new_index(self.kind, int(meta["dimension"]), conn)
            index._apply_delta(conn, None)
        write_snapshot(index.index, self.folder, generation)
        self._pause("after-snapshot")
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [
            ("snapshot", str(generation)), ("snapshot_count", str(index.ntotal)),
            ("previous_snapshot", meta["snapshot"])])
        conn.execute("DELETE FROM tombstones")
        return generation

    def _wants_retrain(self, index: VectorIndex, conn) -> bool:
        if self.kind != "ivf" or index.ntotal < IVF_MIN_VECTORS:
            return False
        if not isinstance(index.index, _ivf_type()):
            return True
        ideal = max(16, int(2 * math.sqrt(index.ntotal)))
        return index.index.nlist * 4 < ideal  # the data has grown ~16x since training

    def _delete_old_snapshots(self) -> None:
        meta = read_meta(self.conn)
        keep = {snapshot_path(self.folder, int(meta["snapshot"])).name,
                snapshot_path(self.folder, int(meta["previous_snapshot"])).name}
        for path in self.folder.glob("vectors.*.faiss"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        for path in self.folder.glob(".vectors.*.tmp"):
            path.unlink(missing_ok=True)

    def _pause(self, point: str) -> None:
        """Test hook: with RAGTUNE_TEST_PAUSE_AT=<point>, sleep here so a test can kill -9 mid-write."""
        if point in self._crash_points:
            import time

            log.warning("paused at %s (pid %d) for a crash test", point, os.getpid())
            time.sleep(3600)
