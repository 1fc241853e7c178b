"""Copy a knowledge base between stores (SQLite + FAISS <-> PostgreSQL + pgvector) without re-embedding.

``migrate_kb(path, settings)`` builds the new store beside the old one (``.NAME.migrating``),
copies every document with its chunks, provenance and stored vectors bit for bit, verifies it
(``check()`` clean, same counts, the same exact nearest chunks for a sample of stored vectors),
and only then swaps folders: the old store is kept inside the new folder as ``previous-store/``.
A migration that fails or is killed leaves the KB as it was. A PostgreSQL schema migrated away
from stays in the database until you drop it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from retrieval.errors import RetrievalError
from retrieval.knowledge_base import PG_POINTER, KnowledgeBase, KnowledgeBaseSettings
from retrieval.records import Chunk
from retrieval.store import DB_NAME, DocumentWrite, connect

log = logging.getLogger(__name__)

PREVIOUS = "previous-store"
VERIFY_SAMPLE = 20  # stored vectors whose exact top-10 must agree between the stores
BATCH_DOCUMENTS = 200  # documents per write transaction while copying


@dataclass(frozen=True)
class MigrationReport:
    """What a migration copied and how it was verified."""

    name: str
    source_store: str
    target_store: str
    documents: int
    chunks: int
    verified_queries: int
    previous: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def summary_line(self) -> str:
        return (f"migrated '{self.name}' from {self.source_store} to {self.target_store}: {self.documents} documents, "
                f"{self.chunks} chunks, no re-embedding; kb check clean, {self.verified_queries} exact searches "
                f"identical; the old store is in {self.previous}")


def store_of(kb: KnowledgeBase) -> str:
    return "postgres" if (kb.path / PG_POINTER).is_file() else "sqlite"


def migrate_kb(path: Path, settings: KnowledgeBaseSettings) -> MigrationReport:
    """Copy the KB at ``path`` into the store ``settings`` describe, verify, and swap it in."""
    path = Path(path)
    src = KnowledgeBase.open(path)
    source = store_of(src)
    if settings.store == source:
        raise RetrievalError(f"knowledge base '{path.name}' is already on {source}; --to names the other store")
    index = {"flat": "flat", "ivf": "hnsw", "hnsw": "ivf"}[src.settings.index]
    settings = replace(settings, index=index if settings.index == "flat" else settings.index)
    if settings.store == "postgres" and not settings.pg_schema:
        from retrieval.pg_store import default_schema

        settings = replace(settings, pg_schema=default_schema(path.name))
    tmp = path.parent / f".{path.name}.migrating"
    shutil.rmtree(tmp, ignore_errors=True)  # a migration killed earlier
    dst = KnowledgeBase.open(tmp, embedder=src.embedder_name, create=True, settings=settings)
    try:
        if dst.stats()["chunks"]:
            raise RetrievalError(f"postgres schema {settings.pg_schema!r} already holds chunks; pick another with "
                                 f"--schema or drop it (DROP SCHEMA {settings.pg_schema} CASCADE)")
        batch: list[DocumentWrite] = []
        with dst.writer() as writer:
            for doc in export_documents(src):
                batch.append(doc)
                if len(batch) >= BATCH_DOCUMENTS:
                    writer.write(upserts=batch)
                    batch = []
            if batch:
                writer.write(upserts=batch)
            writer.compact()
        verified = verify_same(src, dst)
    except BaseException:
        dst.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = dst.stats()
    src.close()
    dst.close()
    old = path.parent / f".{path.name}.before-migrate"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    os.replace(tmp, path)
    os.replace(old, path / PREVIOUS)
    KnowledgeBase.open(path)._write_manifest()  # the manifest names the folder it is in
    log.info("migrated %s from %s to %s", path.name, source, settings.store)
    return MigrationReport(name=path.name, source_store=source, target_store=settings.store,
                           documents=counts["documents"], chunks=counts["chunks"], verified_queries=verified,
                           previous=str(path / PREVIOUS))


def export_documents(kb: KnowledgeBase) -> Iterator[DocumentWrite]:
    """Every document with its chunks and stored vectors, as the writes that would recreate it."""
    if store_of(kb) == "postgres":
        yield from _export_postgres(kb)
    else:
        yield from _export_sqlite(kb)


def _export_sqlite(kb: KnowledgeBase) -> Iterator[DocumentWrite]:
    conn = connect(kb.path / DB_NAME)
    try:
        conn.execute("BEGIN")
        docs = conn.execute("SELECT id, source, title, format, sha256, pages, bytes, settings, metadata FROM documents "
                            "ORDER BY source").fetchall()
        for doc_id, source, title, fmt, sha, pages, size, settings, metadata in docs:
            rows = conn.execute("SELECT c.chunk_id, c.text, c.start_char, c.end_char, c.page, c.heading, c.position, "
                                "v.vector FROM chunks c JOIN vectors v ON v.id = c.id WHERE c.document_id = ? "
                                "ORDER BY c.position", (doc_id,)).fetchall()
            yield _document(source, title, fmt, sha, pages, size, settings, metadata, rows,
                            lambda blob: np.frombuffer(blob, dtype=np.float32))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _export_postgres(kb) -> Iterator[DocumentWrite]:
    from retrieval.pg_knowledge_base import connect as pg_connect

    conn = pg_connect(kb._dsn, kb.schema, kb.name)
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            docs = conn.execute("SELECT id, source, title, format, sha256, pages, bytes, settings, metadata "
                                "FROM documents ORDER BY source").fetchall()
            for doc_id, source, title, fmt, sha, pages, size, settings, metadata in docs:
                # binary: pgvector's send format (dimension, zero, big-endian float32s), bit for bit
                rows = conn.cursor(binary=True).execute(
                    "SELECT chunk_id, text, start_char, end_char, page, heading, position, embedding FROM chunks "
                    "WHERE document_id = %s ORDER BY position", (doc_id,)).fetchall()
                yield _document(source, title, fmt, sha, pages, size, settings, metadata, rows,
                                lambda raw: np.frombuffer(bytes(raw)[4:], dtype=">f4").astype(np.float32))
    finally:
        conn.close()


def _document(source, title, fmt, sha, pages, size, settings, metadata, rows, to_vector) -> DocumentWrite:
    chunks = [Chunk(chunk_id=cid, source=source, title=title, text=text, start=start, end=end, page=page,
                    heading=heading or "", position=position)
              for cid, text, start, end, page, heading, position, _ in rows]
    vectors = np.stack([to_vector(r[7]) for r in rows]) if rows else np.zeros((0, 0), dtype=np.float32)
    return DocumentWrite(source=source, title=title, format=fmt, sha256=sha, chunks=chunks, vectors=vectors,
                         pages=pages, bytes=int(size or 0), settings=json.loads(settings or "{}"),
                         metadata=json.loads(metadata) if metadata is not None else None)


def verify_same(src: KnowledgeBase, dst: KnowledgeBase) -> int:
    """Raise unless ``dst`` is consistent, holds what ``src`` holds, and finds the same exact neighbours."""
    problems = dst.check()
    if problems:
        raise RetrievalError(f"the migrated copy fails kb check: {problems[0]}")
    a, b = src.stats(), dst.stats()
    if (a["documents"], a["chunks"]) != (b["documents"], b["chunks"]):
        raise RetrievalError(f"the copy holds {b['documents']} documents / {b['chunks']} chunks, the source "
                             f"{a['documents']} / {a['chunks']}")
    sample = []
    for doc in export_documents(src):
        sample += [doc.vectors[i] for i in range(min(2, len(doc.chunks)))]
        if len(sample) >= VERIFY_SAMPLE:
            break
    for vec in sample:
        if _exact_top(src, vec) != _exact_top(dst, vec):
            raise RetrievalError("the copy's exact nearest chunks differ from the source's; the KB was left unchanged")
    return len(sample)


def _exact_top(kb: KnowledgeBase, vec: np.ndarray, k: int = 10) -> list[str]:
    """The chunk ids of the exact top-k by inner product (approximate indexes bypassed), ties by chunk id."""
    with kb._read(with_index=True) as reader:
        if store_of(kb) == "postgres":
            ranked = reader.dense(vec, k + 5, [], approximate=False, ef_search=0)
        else:
            ranked = kb._index.search(vec, k + 5) if kb.settings.index == "flat" else _flat_scan(reader, vec, k + 5)
        chunks = reader.chunks_by_ids([i for i, _ in ranked])
    scored = sorted(((-round(s, 5), chunks[i].chunk_id) for i, s in ranked if i in chunks))
    return [cid for _, cid in scored[:k]]


def _flat_scan(reader, vec: np.ndarray, n: int) -> list[tuple[int, float]]:
    rows = reader.conn.execute("SELECT id, vector FROM vectors").fetchall()
    ids = np.array([r[0] for r in rows])
    scores = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1) @ vec
    top = np.argsort(-scores)[:n]
    return [(int(ids[i]), float(scores[i])) for i in top]
