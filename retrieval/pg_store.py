"""The store of a knowledge base in PostgreSQL: documents, chunks, pgvector vectors, tsvector text search.

One schema per knowledge base holds::

    meta        key/value: schema version, embedder, dimension, index settings, created_at
    documents   one row per source (content hash, chunking settings, free metadata)
    chunks      provenance, text, the normalized vector (pgvector) and a generated tsvector
    generation  a sequence: every write transaction takes the next value

The database is the only truth: there is no file beside it, so any number of ``ragtune``
processes on any number of machines read and write one KB. Writers do not share a lock file;
each write is one transaction that first takes a transaction-scoped lock per source it touches
(``pg_advisory_xact_lock``, in sorted order so two writers never deadlock), so two processes
ingesting the same file serialize on that file alone and the second replaces the first's rows.
A kill -9 anywhere before COMMIT leaves the old rows: the server rolls the transaction back.

Vectors: inner product on normalized vectors (``<#>``). With ``index: hnsw`` an HNSW index is
kept; below ``EXACT_BELOW`` chunks (and with a source filter, which HNSW in pgvector 0.6 would
apply after its candidate list and so return too few rows) the index is bypassed for an exact scan.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator

import numpy as np

from retrieval.errors import RetrievalError
from retrieval.records import Chunk, DocumentInfo
from retrieval.store import DocumentWrite, _like_prefix, distinct_sources, row_to_chunk

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Below this many chunks an exact scan is fast enough and always right; above it the HNSW index
# answers. bench/scale.py measured the exact scan of 100k x 384 at 178 ms on this 2-core machine,
# so ~35 ms at 20k: about the cost of the text search beside it.
EXACT_BELOW = 20_000
# HNSW build parameters (pgvector defaults): m links per node, ef_construction candidates per insert.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
TEXT_CONFIG = "english"  # stemming and stopwords of the tsvector, like FTS5's porter tokenizer

_CHUNK_COLUMNS = ("c.id, c.chunk_id, d.source, d.title, c.text, c.start_char, c.end_char, c.page, c.heading, "
                  "c.position")
_QUOTED = re.compile(r'"([^"]*)"')


def schema_sql(schema: str) -> list[str]:
    """The statements that create one KB's tables in ``schema`` (idempotent)."""
    s = _ident(schema)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"CREATE TABLE IF NOT EXISTS {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE SEQUENCE IF NOT EXISTS {s}.generation",
        f"""CREATE TABLE IF NOT EXISTS {s}.documents (
            id BIGSERIAL PRIMARY KEY,
            source TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            format TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            pages INTEGER,
            chunks INTEGER NOT NULL,
            bytes BIGINT NOT NULL DEFAULT 0,
            ingested_at TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{{}}',
            metadata TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.chunks (
            id BIGSERIAL PRIMARY KEY,
            chunk_id TEXT NOT NULL UNIQUE,
            document_id BIGINT NOT NULL REFERENCES {s}.documents(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            page INTEGER,
            heading TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            generation BIGINT NOT NULL,
            embedding public.vector NOT NULL,
            tsv tsvector GENERATED ALWAYS AS
                (to_tsvector('{TEXT_CONFIG}'::regconfig, heading || ' ' || text)) STORED)""",
        f"CREATE INDEX IF NOT EXISTS chunks_by_document ON {s}.chunks(document_id, position)",
        f"CREATE INDEX IF NOT EXISTS chunks_fts ON {s}.chunks USING gin(tsv)",
    ]


def _ident(name: str) -> str:
    """A schema name we made or checked (``[a-z_][a-z0-9_]*``), double-quoted."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise RetrievalError(f"postgres schema {name!r} must be lowercase letters, digits and _ (setting kb.pg_schema)")
    return f'"{name}"'


def default_schema(kb_name: str) -> str:
    """ragtune_<name> with anything but [a-z0-9_] turned into _."""
    return "ragtune_" + re.sub(r"[^a-z0-9_]", "_", kb_name.lower())[:50]


def tsquery_text(fts_expression: str) -> str:
    """The ``to_tsquery`` twin of an FTS5 expression from ``search.fts_query``: the same quoted words, OR-ed.

    Only \\w+ words pass, each single-quoted, so no input is tsquery syntax."""
    return " | ".join(f"'{w}'" for w in _QUOTED.findall(fts_expression) if re.fullmatch(r"\w+", w))


def _vector_text(vec: np.ndarray) -> str:
    """pgvector's text form; repr of float32 round-trips exactly."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vec, dtype=np.float32)) + "]"


def _vector_binary(vec: np.ndarray) -> bytes:
    """pgvector's binary wire form (vector_recv): dimension, a zero, big-endian float32s; bit for bit."""
    return struct.pack(">HH", vec.shape[0], 0) + np.asarray(vec, dtype=">f4").tobytes()


def parse_vector(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float32)


class PgReader:
    """Read queries over one connection; call them inside a transaction for one consistent view."""

    def __init__(self, conn):
        self.conn = conn

    def _all(self, sql: str, params=()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params=()):
        return self.conn.execute(sql, params).fetchone()[0]

    def meta(self) -> dict[str, str]:
        out = dict(self._all("SELECT key, value FROM meta"))
        out["generation"] = str(self._one("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM generation"))
        out.setdefault("snapshot", "0")
        return out

    def documents(self) -> list[DocumentInfo]:
        rows = self._all("SELECT source, title, sha256, chunks, pages, ingested_at, format FROM documents "
                         "ORDER BY source COLLATE \"C\"")
        return [DocumentInfo(*row) for row in rows]

    def document_state(self, source: str) -> tuple[str, dict] | None:
        row = self.conn.execute("SELECT sha256, settings FROM documents WHERE source = %s", (source,)).fetchone()
        return (row[0], json.loads(row[1] or "{}")) if row else None

    def metadata(self, sources: list[str]) -> dict[str, dict]:
        rows = self._all("SELECT source, metadata FROM documents WHERE metadata IS NOT NULL AND source = ANY(%s)",
                         (list(sources),))
        return {src: json.loads(meta) for src, meta in rows}

    def chunk_ids_of(self, source: str) -> list[str]:
        return [r[0] for r in self._all("SELECT c.chunk_id FROM chunks c JOIN documents d ON d.id = c.document_id "
                                        "WHERE d.source = %s ORDER BY c.position", (source,))]

    def sources(self) -> list[str]:
        return [r[0] for r in self._all("SELECT source FROM documents ORDER BY source COLLATE \"C\"")]

    def counts(self, vectors: bool = True) -> dict[str, int]:
        out = {"documents": int(self._one("SELECT count(*) FROM documents")),
               "chunks": int(self._one("SELECT count(*) FROM chunks"))}
        if vectors:  # the vector is a NOT NULL column of the chunk: one per chunk by construction
            out["vectors"] = out["chunks"]
        return out

    def chunk_count_estimate(self) -> int:
        """The planner's row estimate (free) when large, else an exact count (cheap when small)."""
        estimate = self._one("SELECT reltuples::bigint FROM pg_class WHERE oid = 'chunks'::regclass")
        return int(estimate) if estimate >= 100_000 else int(self._one("SELECT count(*) FROM chunks"))

    def has_at_least(self, n: int) -> bool:
        """Whether ``n`` chunks are stored, reading at most ``n`` index entries (before ANALYZE has run too)."""
        if self._one("SELECT reltuples::bigint FROM pg_class WHERE oid = 'chunks'::regclass") >= n:
            return True
        return int(self._one("SELECT count(*) FROM (SELECT 1 FROM chunks LIMIT %s) s", (int(n),))) >= n

    def is_empty(self) -> bool:
        return bool(self._one("SELECT NOT EXISTS (SELECT 1 FROM chunks)"))

    def chunks_by_ids(self, ids: Iterable[int]) -> dict[int, Chunk]:
        rows = self._all(f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "WHERE c.id = ANY(%s)", ([int(i) for i in ids],))
        return {row[0]: row_to_chunk(row) for row in rows}

    def ids_for_chunk_ids(self, chunk_ids: list[str]) -> dict[str, int]:
        return dict(self._all("SELECT chunk_id, id FROM chunks WHERE chunk_id = ANY(%s)", (list(chunk_ids),)))

    def iter_chunks(self) -> Iterator[Chunk]:
        with self.conn.cursor(name="ragtune_iter_chunks") as cur:  # server-side: millions of rows stream
            cur.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
                        "ORDER BY d.source COLLATE \"C\", c.position")
            for row in cur:
                yield row_to_chunk(row)

    def all_chunk_ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self._all("SELECT id FROM chunks")), dtype=np.int64)

    def vectors(self, ids: list[int], dimension: int = 0) -> dict[int, np.ndarray]:
        rows = self._all("SELECT id, embedding::text FROM chunks WHERE id = ANY(%s)", ([int(i) for i in ids],))
        return {i: parse_vector(v) for i, v in rows}

    def dense(self, vector: np.ndarray, n: int, prefixes: list[str], approximate: bool,
              ef_search: int) -> list[tuple[int, float]]:
        """(id, inner product) of the ``n`` nearest chunks; exact unless ``approximate``."""
        if approximate and not prefixes:
            # HNSW returns at most ef_search rows: never fewer candidates than asked for.
            self.conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), int(n))}")
        else:
            self.conn.execute("SET LOCAL enable_indexscan = off")
            self.conn.execute("SET LOCAL enable_bitmapscan = off")
        where, params = _prefix_filter(prefixes)
        rows = self._all(
            f"SELECT c.id, (c.embedding <#> %s::public.vector) AS dist FROM chunks c "
            f"{'JOIN documents d ON d.id = c.document_id WHERE ' + where if where else ''} ORDER BY dist LIMIT %s",
            (_vector_text(vector), *params, int(n)))
        return [(int(i), -float(d)) for i, d in rows]

    def bm25(self, fts_expression: str, n: int, prefixes: list[str] | None = None) -> list[tuple[int, float]]:
        """(id, score) of the ``n`` best text matches ranked by ``ts_rank`` (length-normalized); higher is better.

        Takes the FTS5 expression ``search.fts_query`` builds, as the SQLite store does."""
        text = tsquery_text(fts_expression)
        if not text:
            return []
        where, params = _prefix_filter(prefixes or [])
        sql = (f"SELECT c.id, ts_rank(c.tsv, q, 1) AS r FROM to_tsquery('{TEXT_CONFIG}', %s) q, chunks c "
               f"{'JOIN documents d ON d.id = c.document_id ' if where else ''}WHERE c.tsv @@ q "
               f"{'AND ' + where if where else ''} ORDER BY r DESC, c.id LIMIT %s")
        rows = self._all(sql, (text, *params, int(n)))
        return [(int(i), float(r)) for i, r in rows]

    def document_frequencies(self, words: list[str], prefix: bool = False) -> tuple[int, dict[str, int]]:
        """(number of chunks, {word: chunks containing it}) through the text index (stemmed)."""
        n_chunks = self.chunk_count_estimate()
        counts = {}
        for word in words:
            if word and re.fullmatch(r"\w+", word):
                counts[word] = int(self._one(
                    f"SELECT count(*) FROM chunks WHERE tsv @@ to_tsquery('{TEXT_CONFIG}', %s)",
                    (f"'{word}'" + (":*" if prefix else ""),)))
        return n_chunks, counts

    def problems(self, index: str) -> list[str]:
        """Inconsistencies: documents whose chunk count is off, vectors of other sizes, a lost or invalid index."""
        problems = []
        wrong = self._all("SELECT d.source, d.chunks, count(c.id) FROM documents d LEFT JOIN chunks c "
                          "ON c.document_id = d.id GROUP BY d.id HAVING d.chunks != count(c.id)")
        problems += [f"{src}: manifest says {want} chunks, {have} stored; re-ingest it" for src, want, have in wrong]
        dims = [r[0] for r in self._all("SELECT DISTINCT vector_dims(embedding) FROM chunks")]
        if len(dims) > 1:
            problems.append(f"vectors of {len(dims)} different sizes are stored: {sorted(dims)}")
        invalid = self._all("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = current_schema() AND NOT i.indisvalid")
        problems += [f"index {name} is invalid (a build was interrupted); run: ragtune kb check again to rebuild"
                     for (name,) in invalid]
        if index == "hnsw" and not self.has_hnsw() and self.has_at_least(EXACT_BELOW):
            problems.append(f"the HNSW index is missing (the KB holds over {EXACT_BELOW} chunks)")
        return problems

    def has_hnsw(self) -> bool:
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() "
                              "AND indexname = 'chunks_hnsw')"))

    def size_bytes(self) -> int:
        return int(self._one("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'S', 'm')"))


def _prefix_filter(prefixes: list[str]) -> tuple[str, list[str]]:
    if not prefixes:
        return "", []
    return "(" + " OR ".join("d.source LIKE %s ESCAPE '\\'" for _ in prefixes) + ")", [_like_prefix(p) for p in prefixes]


@dataclass
class PgWriter:
    """The write side: one transaction per ``write`` call; safe to run in many processes at once."""

    conn: object
    schema: str
    index: str = "flat"
    crash_points: frozenset[str] = frozenset()

    @property
    def reader(self) -> PgReader:
        return PgReader(self.conn)

    def close(self) -> None:
        self.conn.close()

    def write(self, upserts: list[DocumentWrite] = (), removals: list[str] = (), force_compact: bool = False) -> int:
        """Insert/replace ``upserts`` and delete ``removals`` atomically; return this write's generation."""
        sources = distinct_sources(upserts)
        conn = self.conn
        with conn.transaction():
            # Per-source locks in one order: concurrent writers of different files never wait for
            # each other; two writers of one file run one after the other, never interleaved.
            for source in sorted({*removals, *sources}):
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.schema}:{source}",))
            generation = int(conn.execute("SELECT nextval('generation')").fetchone()[0])
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            conn.execute("DELETE FROM documents WHERE source = ANY(%s)", (sorted({*removals, *sources}),))
            self._pause("after-delete")
            dimension = self._dimension()
            for doc in upserts:
                vecs = np.ascontiguousarray(doc.vectors, dtype=np.float32)
                if vecs.shape[0] != len(doc.chunks):
                    raise ValueError(f"{doc.source}: {len(doc.chunks)} chunks but {vecs.shape[0]} vectors")
                if dimension == 0 and len(vecs):
                    dimension = self._set_dimension(vecs.shape[1])
                if len(vecs) and vecs.shape[1] != dimension:
                    raise RetrievalError(f"{doc.source}: vectors have dimension {vecs.shape[1]} but this knowledge base "
                                         f"holds {dimension}-dimensional vectors; use the embedder it was created with")
                self._insert_document(doc, vecs, generation, now)
                self._pause("mid-write")
            self._pause("before-commit")
            # The HNSW index is built once the KB is big enough to use it: a build over the rows is
            # ~10x faster than inserting them one by one into the graph (20k x 384: 7 s against 70 s), and
            # below EXACT_BELOW searches scan exactly anyway. After that, each insert keeps it up.
            if self.index == "hnsw" and dimension and (force_compact or upserts) and not self.reader.has_hnsw() \
                    and (force_compact or self.reader.has_at_least(EXACT_BELOW)):
                self._ensure_hnsw()
        return generation

    def compact(self) -> int:
        """Make sure the HNSW index exists (``kb check`` repairs through it) and refresh the planner's statistics."""
        generation = self.write(force_compact=True)
        self.conn.execute("ANALYZE chunks")
        return generation

    def _dimension(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key = 'dimension'").fetchone()[0])

    def _set_dimension(self, dimension: int) -> int:
        """The first vectors fix the column's dimension (HNSW needs a typed column); one writer does it."""
        current = int(self.conn.execute("SELECT value FROM meta WHERE key = 'dimension' FOR UPDATE").fetchone()[0])
        if current:
            return current  # another writer fixed it while we waited for the row
        self.conn.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE public.vector({int(dimension)})")
        self.conn.execute("UPDATE meta SET value = %s WHERE key = 'dimension'", (str(dimension),))
        return dimension

    def _ensure_hnsw(self) -> None:
        self.conn.execute("SET LOCAL maintenance_work_mem = '1GB'")  # the graph must fit, or the build crawls
        self.conn.execute(f"CREATE INDEX IF NOT EXISTS chunks_hnsw ON chunks USING hnsw (embedding public.vector_ip_ops) "
                          f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")

    def _insert_document(self, doc: DocumentWrite, vecs: np.ndarray, generation: int, now: str) -> None:
        document_id = self.conn.execute(
            "INSERT INTO documents(source, title, format, sha256, pages, chunks, bytes, ingested_at, settings, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (doc.source, doc.title, doc.format, doc.sha256, doc.pages, len(doc.chunks), doc.bytes, now,
             json.dumps(doc.settings, sort_keys=True), json.dumps(doc.metadata) if doc.metadata is not None else None),
        ).fetchone()[0]
        if not doc.chunks:
            return
        with self.conn.cursor() as cur:
            # Binary COPY: the server reads the vector column with pgvector's own receive function,
            # so the bytes we send as "bytea" arrive as the exact float32s (no text round trip).
            with cur.copy("COPY chunks (chunk_id, document_id, position, start_char, end_char, page, heading, text, "
                          "generation, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int8", "int4", "int4", "int4", "int4", "text", "text", "int8", "bytea"])
                for c, vec in zip(doc.chunks, vecs):
                    copy.write_row((c.chunk_id, document_id, c.position, c.start, c.end, c.page, c.heading or "",
                                    c.text, generation, _vector_binary(vec)))

    def _pause(self, point: str) -> None:
        """Test hook: with RAGTUNE_TEST_PAUSE_AT=<point>, sleep here so a test can kill -9 mid-write."""
        if point in self.crash_points:
            import time

            log.warning("paused at %s (pid %d) for a crash test", point, os.getpid())
            time.sleep(3600)
