"""``PostgresKnowledgeBase``: the ``KnowledgeBase`` interface over a PostgreSQL + pgvector store.

The KB folder in the workspace keeps only ``postgres.json`` (which database and schema, the DSN
as written: ``env:VARIABLE`` or a URI without a password) and ``manifest.json``; everything else
lives in the database, so several machines that each hold that folder serve one KB. Search,
fusion and MMR are ``KnowledgeBase``'s own; this class supplies the reader, the dense search,
the writer and the inspection. psycopg is imported here only: SQLite users never need it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np

from retrieval.embedding import DEFAULT_EMBEDDER
from retrieval.errors import RetrievalError
from retrieval.records import Chunk
from retrieval.knowledge_base import (MANIFEST, PAUSE_ENV, PG_POINTER, KnowledgeBase, KnowledgeBaseSettings,
                                      KnowledgeBaseWriter, _human_bytes, _now, check_embedder)
from retrieval.pg_store import (EXACT_BELOW, SCHEMA_VERSION, PgReader, PgWriter, _ident, default_schema,
                                schema_sql)

log = logging.getLogger(__name__)

ENV_PREFIX = "env:"


def resolve_dsn(dsn: str, kb_name: str) -> str:
    """The connection string: ``env:NAME`` reads the variable NAME; anything else is used as written."""
    if dsn.startswith(ENV_PREFIX):
        name = dsn[len(ENV_PREFIX):]
        value = os.environ.get(name, "")
        if not value:
            raise RetrievalError(f"knowledge base '{kb_name}' reads its PostgreSQL DSN from ${name}, which is not set; "
                                 f"export {name}=postgresql://USER@HOST/DB")
        return value
    return dsn


def check_storable_dsn(dsn: str) -> None:
    """A DSN written into the KB's files must not carry a password (use env:NAME, PGPASSWORD or ~/.pgpass)."""
    if dsn.startswith(ENV_PREFIX):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", dsn[len(ENV_PREFIX):]):
            raise RetrievalError(f"--dsn {dsn!r}: after env: give an environment variable name, like env:RAGTUNE_PG_DSN")
        return
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise RetrievalError("--dsn must be a postgresql:// URI or env:VARIABLE (setting kb.dsn)")
    if urlsplit(dsn).password or re.search(r"[?&]password=", dsn):
        raise RetrievalError("the DSN holds a password, which would be written into the KB folder; put the DSN in an "
                             "environment variable and pass --dsn env:RAGTUNE_PG_DSN (or use PGPASSWORD / ~/.pgpass)")


def connect(dsn: str, schema: str, kb_name: str):
    """A connection whose search_path is the KB's schema (then public, where pgvector's type lives)."""
    try:
        import psycopg  # the optional "postgres" extra
    except ImportError:
        raise RetrievalError(f"knowledge base '{kb_name}' lives in PostgreSQL and psycopg is not installed; "
                             "pip install 'ragtune[postgres]'") from None
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RetrievalError(f"cannot reach PostgreSQL for knowledge base '{kb_name}' ({first}); is the server up "
                             "and the DSN right?") from None
    conn.execute(f"SET search_path = {_ident(schema)}, public")
    return conn


class PostgresKnowledgeBase(KnowledgeBase):
    """A knowledge base whose documents, chunks and vectors live in one PostgreSQL schema."""

    def __init__(self, path: Path, meta: dict[str, str], pointer: dict, dsn: str):
        self.path = path
        self.name = path.name
        self.embedder_name = meta["embedder"]
        self.settings = KnowledgeBaseSettings(index=meta.get("index", "flat"), store="postgres", dsn=pointer["dsn"],
                                              pg_schema=pointer["schema"], ef_search=int(meta.get("ef_search", 100)),
                                              embed_context=meta.get("embed_context") == "1")
        self.schema = pointer["schema"]
        self._dsn = dsn
        self._embedder = None
        self._conn = connect(dsn, self.schema, self.name)
        self._reader = PgReader(self._conn)
        self._lock = threading.RLock()
        self._adapter, self._adapter_stamp = None, "unread"  # the query adapter (KnowledgeBase._query_adapter)

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open_folder(cls, path: Path, embedder: str | None, create: bool,
                    settings: KnowledgeBaseSettings | None) -> "PostgresKnowledgeBase":
        """Open the KB that ``path/postgres.json`` points at; with ``create``, make the pointer and the schema.

        Creating a KB whose schema already exists attaches to it: that is how a second machine joins."""
        pointer_path = path / PG_POINTER
        if not pointer_path.is_file():
            settings = settings or KnowledgeBaseSettings()
            check_storable_dsn(settings.dsn)
            pointer = {"store": "postgres", "dsn": settings.dsn, "schema": settings.pg_schema or default_schema(path.name)}
            _ident(pointer["schema"])
            cls._create_schema(resolve_dsn(settings.dsn, path.name), pointer["schema"], path.name,
                               embedder or DEFAULT_EMBEDDER, settings)
            path.mkdir(parents=True, exist_ok=True)
            tmp = path / f".{PG_POINTER}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, pointer_path)
        try:
            pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
            pointer["dsn"], pointer["schema"]
        except (OSError, ValueError, KeyError, TypeError):
            raise RetrievalError(f"{pointer_path} is not a readable postgres pointer (store, dsn, schema); re-create it "
                                 f"with: ragtune kb create {path.name} --store postgres --dsn env:RAGTUNE_PG_DSN") from None
        dsn = resolve_dsn(pointer["dsn"], path.name)
        conn = connect(dsn, pointer["schema"], path.name)
        try:
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            except Exception as exc:  # psycopg.errors.UndefinedTable and kin: the schema is not a KB
                raise RetrievalError(f"schema {pointer['schema']!r} holds no ragtune knowledge base ({type(exc).__name__}); "
                                     f"create it with: ragtune kb create {path.name} --store postgres --dsn ...") from None
        finally:
            conn.close()
        if int(meta.get("schema", 0)) != SCHEMA_VERSION:
            raise RetrievalError(f"knowledge base '{path.name}' has postgres store schema {meta.get('schema')}, this "
                                 f"ragtune reads {SCHEMA_VERSION}; migrate it with a matching ragtune")
        check_embedder(path.name, embedder, meta["embedder"])
        kb = cls(path, meta, pointer, dsn)
        if not (path / MANIFEST).exists():
            kb._write_manifest()
        return kb

    @staticmethod
    def _create_schema(dsn: str, schema: str, kb_name: str, embedder: str, settings: KnowledgeBaseSettings) -> None:
        conn = connect(dsn, schema, kb_name)
        try:
            with conn.transaction():
                # One creator at a time per server: CREATE ... IF NOT EXISTS races otherwise.
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('ragtune create schema', 0))")
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                for statement in schema_sql(schema):
                    conn.execute(statement)
                meta = {"schema": str(SCHEMA_VERSION), "embedder": embedder, "index": settings.index,
                        "ef_search": str(settings.ef_search), "dimension": "0",
                        "embed_context": "1" if settings.embed_context else "0", "created_at": _now()}
                for key, value in meta.items():
                    conn.execute("INSERT INTO meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING", (key, value))
        finally:
            conn.close()
        log.info("knowledge base %s in postgres schema %s (embedder %s, index %s)", kb_name, schema, embedder,
                 settings.index)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"PostgresKnowledgeBase({str(self.path)!r}, schema={self.schema!r}, embedder={self.embedder_name!r})"

    # -- reading -------------------------------------------------------------------------
    @contextmanager
    def _read(self, with_index: bool = False) -> Iterator[PgReader]:
        """One consistent snapshot (a repeatable-read, read-only transaction)."""
        import psycopg

        with self._lock:
            if self._conn.broken:  # the server restarted or dropped us: a long-lived server reconnects
                self._conn = connect(self._dsn, self.schema, self.name)
                self._reader = PgReader(self._conn)
            try:
                with self._conn.transaction():
                    self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    yield self._reader
            except psycopg.OperationalError as exc:
                raise RetrievalError(f"lost PostgreSQL for knowledge base '{self.name}' ({str(exc).strip()[:160]}); "
                                     "retry when the server is back") from None

    def _dense(self, reader: PgReader, qvec: np.ndarray, n: int, prefixes: list[str]) -> list[tuple[int, float]]:
        approximate = self.settings.index == "hnsw" and reader.has_at_least(EXACT_BELOW)
        return reader.dense(qvec, n, prefixes, approximate, self.settings.ef_search)

    def iter_chunks(self) -> Iterator[Chunk]:
        """Every chunk, by source then position, from one consistent snapshot (its own connection)."""
        conn = connect(self._dsn, self.schema, self.name)
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield from PgReader(conn).iter_chunks()
        finally:
            conn.close()

    def stats(self) -> dict:
        """Counts, embedder, dimension, index, generation and size in the database."""
        with self._read() as reader:
            counts, meta, size = reader.counts(), reader.meta(), reader.size_bytes()
            hnsw = reader.has_hnsw()
        if self.settings.index == "hnsw":
            index = (f"hnsw (ef_search {self.settings.ef_search}, approximate from {EXACT_BELOW} chunks)"
                     if hnsw else "hnsw (not built yet: exact scan)")
        else:
            index = "flat (exact inner product)"
        return {
            "name": self.name, "path": str(self.path), "store": f"postgres (schema {self.schema})", **counts,
            "embedder": meta["embedder"], "dimension": int(meta.get("dimension") or 0) or None,
            "index": index, "generation": int(meta["generation"]), "snapshot": 0,
            "size_on_disk": _human_bytes(size), "size_bytes": size, "created_at": meta.get("created_at"),
        }

    def check(self) -> list[str]:
        """[] when consistent; else one line per problem. A missing or invalid HNSW index is rebuilt."""
        with self._read() as reader:
            problems = reader.problems(self.settings.index)
            meta = reader.meta()
        if any("HNSW" in p or "invalid" in p for p in problems):
            with self.writer() as writer:
                writer._store.conn.execute("REINDEX TABLE chunks")
                writer.compact()
            problems = [p + "; rebuilt" if ("HNSW" in p or "invalid" in p) else p for p in problems]
        manifest = self._read_manifest()
        if manifest is None or manifest.get("embedder") != meta["embedder"]:
            problems.append(f"{MANIFEST} was missing or out of date; rewritten")
            self._write_manifest()
        return problems

    # -- writing -------------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[KnowledgeBaseWriter]:
        """A writer on its own connection. No lock file: any number of writers, in any processes, at once."""
        pause = frozenset(p for p in os.environ.get(PAUSE_ENV, "").split(",") if p)
        conn = connect(self._dsn, self.schema, self.name)
        store = PgWriter(conn, self.schema, self.settings.index, crash_points=pause)
        try:
            yield KnowledgeBaseWriter(self, store)
        finally:
            store.close()
        self._write_manifest()

    def _write_manifest(self) -> None:
        """The readable summary; it names the DSN as configured (env:NAME stays a name, never its value)."""
        from ragtune import __version__

        with self._read() as reader:
            meta, counts = reader.meta(), reader.counts(vectors=False)
        manifest = {
            "name": self.name, "store": "postgres", "schema": self.schema, "dsn": self.settings.dsn,
            "embedder": meta["embedder"], "dimension": int(meta.get("dimension") or 0) or None,
            "index": asdict(self.settings),
            "documents": counts["documents"], "chunks": counts["chunks"], "generation": int(meta["generation"]),
            "created_at": meta.get("created_at"), "schema_version": int(meta["schema"]), "ragtune": __version__,
            "files": {PG_POINTER: "which database and schema hold this KB (the DSN as written: env:NAME or a URI)",
                      "postgres": "documents, chunks, vectors (pgvector) and the tsvector text index"},
        }
        tmp = self.path / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / MANIFEST)

