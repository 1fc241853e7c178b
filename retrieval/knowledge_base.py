"""``KnowledgeBase``: a named folder of documents, chunks and vectors you can search.

Open one with ``KnowledgeBase.open(path, create=True)``; write to it through ``writer()`` (the
ingest pipeline does), read from it with ``search`` and the listing methods. Any number of
readers, in any processes, run alongside the one writer: SQLite's WAL gives each read one
consistent generation, and the in-memory FAISS index follows that generation (see store.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from retrieval import query_adapter
from retrieval.embedding import DEFAULT_EMBEDDER, Embedder, resolve_embedder
from retrieval.errors import KBLockedError, RetrievalError
from retrieval.records import Chunk, DocumentInfo, Hit
from retrieval.search import MODES, fts_query, fusion_window, maximal_marginal_relevance, reciprocal_rank_fusion
from retrieval.store import (DB_NAME, SCHEMA_VERSION, DocumentWrite, StoreReader, StoreWriter, VectorIndex,
                             connect, create_schema, read_meta, snapshot_path)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK_FILE = "write.lock"
PG_POINTER = "postgres.json"  # in a KB folder: the KB lives in PostgreSQL (see pg_knowledge_base.py)
PAUSE_ENV = "RAGTUNE_TEST_PAUSE_AT"  # test hook: comma-separated store pause points (see StoreWriter._pause)


@dataclass(frozen=True)
class KnowledgeBaseSettings:
    """The ``kb:`` section of config.yaml; fixed when a knowledge base is created."""

    index: str = "flat"  # flat: exact search (fine to ~1M chunks); ivf (sqlite) / hnsw (postgres): approximate
    nprobe: int = 32  # ivf only: lists probed per query; higher raises recall and latency
    embed_context: bool = True  # embed each chunk with its document's title and heading path in front
    # ("Title > Setup > Install" + text): a chunk of a reference page rarely repeats what its heading
    # says. Only the vector sees it; stored text and offsets stay exact. KBs made before it: False.
    store: str = "sqlite"  # sqlite: one folder on one machine; postgres: one database, many servers (docs/postgres.md)
    dsn: str = ""  # postgres only: env:VARIABLE (kept out of files) or a postgresql:// URI without a password
    pg_schema: str = ""  # postgres only: the schema holding this KB's tables (default ragtune_<name>)
    ef_search: int = 100  # hnsw only: candidates visited per query; higher raises recall and latency

    def __post_init__(self):
        if self.store not in ("sqlite", "postgres"):
            raise ValueError(f"store must be 'sqlite' or 'postgres', got {self.store!r}")
        allowed = ("flat", "ivf") if self.store == "sqlite" else ("flat", "hnsw")
        if self.index not in allowed:
            raise ValueError(f"index must be {' or '.join(repr(a) for a in allowed)} for a {self.store} store, "
                             f"got {self.index!r}")
        if self.nprobe < 1:
            raise ValueError(f"nprobe must be at least 1, got {self.nprobe}")
        if self.ef_search < 1:
            raise ValueError(f"ef_search must be at least 1, got {self.ef_search}")
        if self.store == "postgres" and not self.dsn:
            raise ValueError("a postgres store needs a dsn: --dsn env:RAGTUNE_PG_DSN (or kb: {dsn: ...} in config.yaml)")


_ADAPTER_CHUNKS = 50_000  # chunk vectors a query-adapter fit reads at most (a sample of a bigger KB)


class KnowledgeBase:
    """A knowledge base folder: SQLite + FAISS store, its embedder, search and inspection."""

    def __init__(self, path: Path, meta: dict[str, str]):
        self.path = path
        self.name = path.name
        self.embedder_name = meta["embedder"]
        self.settings = KnowledgeBaseSettings(index=meta.get("index", "flat"), nprobe=int(meta.get("nprobe", 32)),
                                              embed_context=meta.get("embed_context") == "1")
        self._embedder: Embedder | None = None
        self._conn = connect(path / DB_NAME)
        self._reader = StoreReader(self._conn)
        self._index = VectorIndex(path, self.settings.index, self.settings.nprobe)
        self._lock = threading.RLock()
        self._adapter: np.ndarray | None = None  # the query adapter and the file stamp it was read at
        self._adapter_stamp: int | str | None = "unread"

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, embedder: str | None = None, create: bool = False,
             settings: KnowledgeBaseSettings | None = None) -> "KnowledgeBase":
        """Open the knowledge base at ``path``; with ``create``, make it if missing.

        ``embedder`` and ``settings`` apply when creating; the embedder is then fixed for the KB's
        life (saved in kb.sqlite and manifest.json) and a different one is an error.
        """
        path = Path(path)
        if (path / PG_POINTER).is_file() or (create and settings is not None and settings.store == "postgres"
                                             and not cls.exists(path)):
            from retrieval.pg_knowledge_base import PostgresKnowledgeBase  # psycopg only for those who use it

            return PostgresKnowledgeBase.open_folder(path, embedder, create, settings)
        if not cls.exists(path):
            if not create:
                raise RetrievalError(f"no knowledge base '{path.name}' at {path}; "
                                     f"create it with: ragtune ingest PATH --kb {path.name}")
            cls._create(path, embedder or DEFAULT_EMBEDDER, settings or KnowledgeBaseSettings())
        try:
            conn = connect(path / DB_NAME)
            try:
                meta = read_meta(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise RetrievalError(f"{path / DB_NAME} is not a readable knowledge base ({exc}); move the folder "
                                 f"away and re-ingest with: ragtune ingest PATH --kb {path.name}") from None
        if int(meta.get("schema", 0)) != SCHEMA_VERSION:
            raise RetrievalError(f"knowledge base '{path.name}' has store schema {meta.get('schema')}, this ragtune "
                                 f"reads {SCHEMA_VERSION}; re-create it with: ragtune ingest PATH --kb NEW_NAME")
        check_embedder(path.name, embedder, meta["embedder"])
        kb = cls(path, meta)
        if not (path / MANIFEST).exists():
            kb._write_manifest()
        return kb

    @staticmethod
    def exists(path: Path | str) -> bool:
        """Whether ``path`` holds a knowledge base (a kb.sqlite whose creation committed)."""
        if (Path(path) / PG_POINTER).is_file():
            return True
        db = Path(path) / DB_NAME
        if not db.is_file():
            return False
        try:
            conn = sqlite3.connect(str(db))
            try:  # a creation killed before its schema committed leaves a file without tables
                return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            return True  # there, but unreadable: open() says so

    @classmethod
    def _create(cls, path: Path, embedder: str, settings: KnowledgeBaseSettings) -> None:
        path.mkdir(parents=True, exist_ok=True)
        with _write_lock(path):
            if cls.exists(path):
                return  # another process created it while we waited
            conn = connect(path / DB_NAME)
            try:
                create_schema(conn, {"embedder": embedder, "index": settings.index, "nprobe": str(settings.nprobe),
                                     "embed_context": "1" if settings.embed_context else "0", "created_at": _now()})
            finally:
                conn.close()
        log.info("created knowledge base %s (embedder %s, index %s)", path, embedder, settings.index)

    def close(self) -> None:
        """Close the SQLite connection (the object is unusable afterwards)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "KnowledgeBase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeBase({str(self.path)!r}, embedder={self.embedder_name!r})"

    def passage(self, title: str, heading: str, text: str) -> str:
        """The text a chunk is embedded as: with ``embed_context``, its title and heading path first."""
        if not self.settings.embed_context:
            return text
        parts: list[str] = []
        for part in [title, *heading.split(" > ")]:  # a heading path often opens with the title itself
            if part.strip() and (not parts or part.strip().lower() != parts[-1].lower()):
                parts.append(part.strip())
        return f"{' > '.join(parts)}\n{text}" if parts else text

    @property
    def embedder(self) -> Embedder:
        """The KB's embedder (the model itself loads on first use)."""
        if self._embedder is None:
            self._embedder = Embedder(self.embedder_name)
        return self._embedder

    def use_embedder(self, embedder) -> None:
        """Embed with ``embedder`` (an object with ``Embedder``'s ``name``, ``embed_documents`` and
        ``embed_query``, e.g. LangChain embeddings wrapped by retrieval.langchain_adapter) instead of
        loading a sentence-transformers model by name; its name must be the one the KB records."""
        if embedder.name != self.embedder_name:
            raise RetrievalError(f"knowledge base '{self.name}' was built with embedder {self.embedder_name!r}, "
                                 f"not {embedder.name!r}; its vectors only match that embedder")
        self._embedder = embedder

    # -- reading -------------------------------------------------------------------------
    @contextmanager
    def _read(self, with_index: bool = False) -> Iterator[StoreReader]:
        """One consistent snapshot of the store (and the FAISS index synced to it)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                if with_index:
                    self._index.sync(self._conn)
                yield self._reader
            finally:
                self._conn.execute("COMMIT")

    def search(self, query: str, k: int = 5, mode: str = "hybrid", source_prefix: str | None = None,
               mmr: float | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``.

        mode: ``dense`` (embeddings, cosine), ``bm25`` (FTS5) or ``hybrid`` (reciprocal rank fusion of both).
        source_prefix: only documents whose source starts with it (a relative path is also tried absolute).
        mmr: lambda in [0, 1] to diversify the hits by maximal marginal relevance (1.0 = relevance only);
        hits then come in MMR order and keep their relevance score.
        """
        if mode not in MODES:
            raise RetrievalError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not isinstance(k, int) or k < 1:
            raise RetrievalError(f"k must be a positive integer, got {k!r}")
        if mmr is not None and not 0.0 <= mmr <= 1.0:
            raise RetrievalError(f"mmr lambda must be between 0 and 1, got {mmr}")
        query = (query or "").strip()
        if not query:
            raise RetrievalError("the query is empty; give some words to search for")
        with self._read() as reader:
            if reader.is_empty():
                return []
        needs_vector = mode != "bm25" or mmr is not None
        qvec = self._embed_query(query) if needs_vector else None
        pool = max(50, 4 * k)
        prefixes = _prefixes(source_prefix)
        with self._read(with_index=mode != "bm25") as reader:
            dense, sparse = [], []
            if mode in ("dense", "hybrid"):
                dense = self._dense(reader, qvec, pool, prefixes)
            if mode in ("bm25", "hybrid"):
                sparse = reader.bm25(fts_query(query), pool, prefixes)
            if mode == "dense":
                ranked = dense
            elif mode == "bm25":
                ranked = sparse
            else:
                depth = pool if mmr is not None else fusion_window(k)  # MMR needs the wider candidate pool
                ranked = reciprocal_rank_fusion([[i for i, _ in dense[:depth]], [i for i, _ in sparse[:depth]]])
            if mmr is not None and ranked:
                ids = [i for i, _ in ranked]
                vecs = reader.vectors(ids, qvec.shape[0])
                ids = [i for i in ids if i in vecs]
                order = maximal_marginal_relevance(qvec, np.stack([vecs[i] for i in ids]), k, mmr)
                scores = dict(ranked)
                ranked = [(ids[j], scores[ids[j]]) for j in order]
            ranked = ranked[:k]
            chunks = reader.chunks_by_ids([i for i, _ in ranked])
        hits = [(chunks[i], s) for i, s in ranked if i in chunks]
        return [Hit(chunk=c, score=float(s), rank=r) for r, (c, s) in enumerate(hits, start=1)]

    def _dense(self, reader: StoreReader, qvec: np.ndarray, n: int, prefixes: list[str]) -> list[tuple[int, float]]:
        """(id, inner product) of the ``n`` nearest chunks, only under ``prefixes`` when given."""
        allowed = reader.ids_with_source_prefix(prefixes) if prefixes else None
        return self._index.search(qvec, n, allowed)

    def document_frequencies(self, words: list[str], prefix: bool = False) -> tuple[int, dict[str, int]]:
        """(number of chunks, {word: chunks containing it}): IDF weights for ``retrieval.focus``.

        prefix: count any word starting with the word's stem (the unknown-term check's leniency)."""
        with self._read() as reader:
            return reader.document_frequencies(words, prefix)

    def focus(self, question: str, chunks: list[Chunk], sentences: int = 4,
              strict: bool = False) -> list[tuple[int, Chunk]]:
        """``retrieval.focus.focus_chunks`` with this KB's embedder and word statistics."""
        from retrieval.focus import FocusSettings, focus_chunks

        return focus_chunks(question, chunks, self.embedder, self.document_frequencies,
                            FocusSettings(sentences=sentences, strict=strict))

    def unknown_terms(self, question: str, chunks: list[Chunk], similarity: float = 0.45) -> list[str]:
        """``retrieval.focus.unknown_terms`` with this KB's embedder and word statistics."""
        from retrieval.focus import unknown_terms

        return unknown_terms(question, chunks, self.embedder,
                             lambda words: self.document_frequencies(words, prefix=True), similarity)

    def _embed_query(self, query: str) -> np.ndarray:
        vec = self.embedder.embed_query(query)
        with self._read() as reader:
            dimension = int(reader.meta().get("dimension") or 0)
        if dimension and vec.shape[0] != dimension:
            raise RetrievalError(f"embedder {self.embedder_name!r} gives {vec.shape[0]}-dimensional vectors but "
                                 f"knowledge base '{self.name}' holds {dimension}-dimensional ones")
        w = self._query_adapter(vec.shape[0])
        return vec if w is None else query_adapter.apply(w, vec)

    def _query_adapter(self, dimension: int) -> np.ndarray | None:
        """The KB's query adapter, reread when its file changes (another process may refit it)."""
        path = self.path / query_adapter.MATRIX_FILE
        stamp = path.stat().st_mtime_ns if path.is_file() else None
        if self._adapter_stamp != stamp:
            self._adapter = query_adapter.load(self.path, dimension) if stamp else None
            self._adapter_stamp = stamp
        return self._adapter

    def fit_query_adapter(self, pairs: list[tuple[str, str]],
                          settings: query_adapter.QueryAdapterSettings = query_adapter.QueryAdapterSettings()
                          ) -> query_adapter.QueryAdapterReport:
        """Fit the KB's query adapter on (question, chunk_id) pairs and keep it only if it ranks the right
        chunk first more often on held-out pairs (``retrieval/query_adapter.py``); otherwise remove any."""
        with self._read() as reader:
            rows = reader.ids_for_chunk_ids(list(dict.fromkeys(c for _, c in pairs)))
            pairs = [(q, rows[c]) for q, c in pairs if c in rows]
            if len(pairs) < 10:
                raise RetrievalError(f"knowledge base '{self.name}' gave {len(pairs)} questions to tune retrieval on; "
                                     "it needs at least 10: ingest more documents")
            all_ids = [int(i) for i in reader.all_chunk_ids()]
        rng = np.random.default_rng(settings.seed)
        sample = set(rng.choice(all_ids, min(len(all_ids), _ADAPTER_CHUNKS), replace=False).tolist())
        ids = sorted(sample | {r for _, r in pairs})
        with self._read() as reader:
            vectors = reader.vectors(ids, 0)
        ids = [i for i in ids if i in vectors]
        row_of = {i: n for n, i in enumerate(ids)}
        pairs = [(q, r) for q, r in pairs if r in row_of]
        chunks = np.stack([vectors[i] for i in ids])
        questions = self.embedder.embed_documents([q for q, _ in pairs])
        targets = np.array([row_of[r] for _, r in pairs])
        w, report = query_adapter.fit_query_adapter(questions, targets, chunks, settings)
        if report.kept:
            query_adapter.save(self.path, w, report, len(all_ids))
        else:
            query_adapter.remove(self.path)
        log.info(report.summary_line())
        return report

    def list_documents(self) -> list[DocumentInfo]:
        """Every document, sorted by source."""
        with self._read() as reader:
            return reader.documents()

    def get_chunks(self, chunk_ids: list[str]) -> list[Chunk]:
        """The chunks with these ids, in the order given; ids not stored are skipped."""
        with self._read() as reader:
            ids = reader.ids_for_chunk_ids(list(chunk_ids))
            chunks = reader.chunks_by_ids(ids.values())
        return [chunks[ids[c]] for c in chunk_ids if c in ids]

    def document_chunk_ids(self, source: str) -> list[str]:
        """The chunk ids of one document, in order ([] if it is not stored)."""
        with self._read() as reader:
            return reader.chunk_ids_of(source)

    def document_metadata(self, sources: list[str]) -> dict[str, dict]:
        """Free metadata stored with documents (LangChain ``add_texts``), by source; others are absent."""
        if not sources:
            return {}
        with self._read() as reader:
            return reader.metadata(list(dict.fromkeys(sources)))

    def iter_chunks(self) -> Iterator[Chunk]:
        """Every chunk, by source then position, from one consistent snapshot (its own connection)."""
        conn = connect(self.path / DB_NAME)
        try:
            conn.execute("BEGIN")
            yield from StoreReader(conn).iter_chunks()
            conn.execute("COMMIT")
        finally:
            conn.close()

    def document_path(self, source: str) -> Path | None:
        """The file to open or download for ``source``, if it is a path that still exists."""
        path = Path(source)
        return path if path.is_absolute() and path.is_file() else None

    def stats(self) -> dict:
        """Counts, embedder, dimension, index, generation and size on disk."""
        with self._read(with_index=True) as reader:
            counts, meta = reader.counts(), reader.meta()
            index = self._index.describe()
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return {
            "name": self.name, "path": str(self.path), **counts,
            "embedder": meta["embedder"], "dimension": int(meta.get("dimension") or 0) or None,
            "index": index, "generation": int(meta["generation"]), "snapshot": int(meta["snapshot"]),
            "size_on_disk": _human_bytes(size), "size_bytes": size, "created_at": meta.get("created_at"),
        }

    def check(self) -> list[str]:
        """[] when consistent; else one line per problem. A lost or stale FAISS snapshot is rebuilt."""
        problems: list[str] = []
        fresh = VectorIndex(self.path, self.settings.index, self.settings.nprobe)
        with self._read() as reader:
            problems += reader.problems()
            fresh.sync(self._conn)
            chunk_ids = np.fromiter((r[0] for r in self._conn.execute("SELECT id FROM chunks")), dtype=np.int64)
            meta = reader.meta()
        index_ids = fresh.ids()
        missing = np.setdiff1d(chunk_ids, index_ids)
        orphans = np.setdiff1d(index_ids, chunk_ids)
        if len(missing):
            problems.append(f"{len(missing)} chunks have no vector in the FAISS index")
        if len(orphans):
            problems.append(f"{len(orphans)} orphan vectors in the FAISS index have no chunk")
        if len(index_ids) != len(np.unique(index_ids)):
            problems.append("the FAISS index holds duplicate ids")
        if fresh.problem:
            problems.append(fresh.problem + self._repair_snapshot())
        manifest = self._read_manifest()
        if manifest is None or manifest.get("embedder") != meta["embedder"]:
            problems.append(f"{MANIFEST} was missing or out of date; rewritten")
            self._write_manifest()
        return problems

    def _repair_snapshot(self) -> str:
        try:
            with self.writer() as writer:
                generation = writer.compact()
        except KBLockedError as exc:
            return f"; not saved: {exc}"
        return f"; saved as {snapshot_path(self.path, generation).name}"

    # -- writing -------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator["KnowledgeBaseWriter"]:
        """Hold the one-writer lock for the block; raises KBLockedError if another process has it."""
        pause = frozenset(p for p in os.environ.get(PAUSE_ENV, "").split(",") if p)
        with _write_lock(self.path):
            store = StoreWriter(self.path, self.settings.index, self.settings.nprobe, crash_points=pause)
            try:
                yield KnowledgeBaseWriter(self, store)
            finally:
                store.close()
        self._write_manifest()

    def _read_manifest(self) -> dict | None:
        try:
            return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _write_manifest(self) -> None:
        """The readable twin of kb.sqlite's meta: what built this KB and how to open it."""
        from ragtune import __version__

        with self._read() as reader:
            meta, counts = reader.meta(), reader.counts(vectors=False)
        manifest = {
            "name": self.name, "embedder": meta["embedder"], "dimension": int(meta.get("dimension") or 0) or None,
            "index": asdict(self.settings), "documents": counts["documents"], "chunks": counts["chunks"],
            "generation": int(meta["generation"]), "snapshot": snapshot_path(self.path, int(meta["snapshot"])).name
            if int(meta["snapshot"]) else None, "created_at": meta.get("created_at"), "schema": int(meta["schema"]),
            "ragtune": __version__,
            "files": {DB_NAME: "documents, chunks, vectors (float32), FTS5 BM25 index; the source of truth",
                      "vectors.<generation>.faiss": "FAISS snapshot derived from kb.sqlite; rebuilt if lost"},
        }
        tmp = self.path / f".{MANIFEST}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.path / MANIFEST)
        except OSError as exc:  # a full disk: the manifest is a readable copy, kb.sqlite stays the truth
            tmp.unlink(missing_ok=True)
            log.warning("%s not updated (%s); 'ragtune kb check' rewrites it once there is room", MANIFEST, exc)


class KnowledgeBaseWriter:
    """What the one writer may do: look up stored documents and write atomic batches."""

    def __init__(self, kb: KnowledgeBase, store: StoreWriter):
        self.kb = kb
        self._store = store

    def document_state(self, source: str) -> tuple[str, dict] | None:
        """(sha256, chunking settings) of the stored document ``source``, or None."""
        return self._store.reader.document_state(source)

    def sources(self) -> list[str]:
        """Every stored source."""
        return self._store.reader.sources()

    def write(self, upserts: list[DocumentWrite] = (), removals: list[str] = ()) -> int:
        """Replace/insert ``upserts`` and delete ``removals`` in one transaction; returns the new generation."""
        return self._store.write(list(upserts), list(removals))

    def compact(self) -> int:
        """Rewrite the FAISS snapshot to hold everything (normally automatic)."""
        return self._store.compact()


@contextmanager
def _write_lock(folder: Path) -> Iterator[None]:
    """The one-writer lock: an fcntl lock on write.lock, which holds the writer's pid."""
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise KBLockedError(f"knowledge base '{folder.name}' is locked by pid {holder} (ingest running?); "
                                "wait or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_embedder(kb_name: str, asked: str | None, stored: str) -> None:
    """RetrievalError when ``asked`` (if given) is not the embedder the KB's vectors were made with."""
    if asked and not _same_embedder(asked, stored):
        raise RetrievalError(f"knowledge base '{kb_name}' was built with embedder {stored!r}, not {asked!r}; its "
                             "vectors only match that embedder. Use another --kb for a new one")


def _same_embedder(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return resolve_embedder(a) == resolve_embedder(b)
    except Exception:  # an embedder that cannot be resolved is simply not the same one
        return False


def _prefixes(source_prefix: str | None) -> list[str]:
    if not source_prefix:
        return []
    out = [source_prefix]
    if ":" not in source_prefix.split("/")[0] and not os.path.isabs(source_prefix):
        absolute = os.path.abspath(source_prefix) + (os.sep if source_prefix.endswith(os.sep) else "")
        out.append(absolute)
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
