"""The knowledge base as LangChain parts: a ``VectorStore``, a ``BaseRetriever`` and ``Embeddings``.

    from retrieval.langchain_adapter import KnowledgeBaseRetriever, KnowledgeBaseVectorStore
    store = KnowledgeBaseVectorStore(KnowledgeBase.open(path))
    retriever = store.as_retriever(search_kwargs={"k": 5})        # or KnowledgeBaseRetriever(kb=kb, k=5)
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | llm

Search results are ``Document``s whose metadata carries the citation provenance (source, title,
page, heading, start, end, chunk_id, score). ``add_texts`` stores each text as a one-chunk
document with source ``langchain:<id>`` (texts longer than the embedder's window are embedded
truncated: split them first); ``delete(ids)`` removes them again.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict

from retrieval.embedding import Embedder
from retrieval.knowledge_base import KnowledgeBase
from retrieval.records import Chunk, Hit
from retrieval.store import DocumentWrite

SOURCE_PREFIX = "langchain:"


class KnowledgeBaseEmbeddings(Embeddings):
    """A knowledge base's ``Embedder`` as LangChain ``Embeddings`` (normalized vectors)."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One normalized vector per text."""
        return self.embedder.embed_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The normalized vector of a query."""
        return self.embedder.embed_query(text).tolist()


class KnowledgeBaseVectorStore(VectorStore):
    """A ``KnowledgeBase`` behind LangChain's ``VectorStore`` interface; ``mode`` picks dense, bm25 or hybrid."""

    def __init__(self, kb: KnowledgeBase, mode: str = "hybrid"):
        self.kb = kb
        self.mode = mode

    @property
    def embeddings(self) -> Embeddings:
        return KnowledgeBaseEmbeddings(self.kb.embedder)

    # -- writing ---------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Store each text as a one-chunk document (replacing one with the same id); returns the ids."""
        texts = list(texts)
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        ids = list(ids) if ids is not None else [uuid.uuid4().hex for _ in texts]
        if not len(texts) == len(metadatas) == len(ids):
            raise ValueError(f"got {len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids")
        if not texts:
            return []
        if len(set(map(str, ids))) != len(ids):
            raise ValueError("add_texts got the same id twice in one call")
        vectors = self.kb.embedder.embed_documents(texts)
        upserts = []
        for text, meta, doc_id, vec in zip(texts, metadatas, ids, vectors):
            source = SOURCE_PREFIX + str(doc_id)
            sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
            title = str(meta.get("title") or meta.get("source") or "")
            page = meta.get("page") if isinstance(meta.get("page"), int) else None
            chunk = Chunk(chunk_id=hashlib.sha256(f"{source}\0{sha}\0{0}".encode()).hexdigest()[:20], source=source,
                          title=title, text=text, start=0, end=len(text), page=page,
                          heading=str(meta.get("heading") or ""), position=0)
            upserts.append(DocumentWrite(source=source, title=title, format="langchain", sha256=sha, chunks=[chunk],
                                         vectors=np.asarray(vec, dtype=np.float32).reshape(1, -1),
                                         pages=None, bytes=len(text.encode("utf-8")), metadata=dict(meta)))
        with self.kb.writer() as writer:
            writer.write(upserts=upserts)
        return [str(i) for i in ids]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the documents with these ids (from ``add_texts``) or these sources; True if all were found."""
        if not ids:
            return False
        with self.kb.writer() as writer:
            stored = set(writer.sources())
            found = [s for i in ids for s in (SOURCE_PREFIX + str(i), str(i)) if s in stored]
            if found:
                writer.write(removals=found)
        return len(found) == len(ids)

    # -- reading ---------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents by ``add_texts`` id or by chunk id."""
        chunk_ids = [_chunk_id_for(self.kb, i) or i for i in ids]
        chunks = self.kb.get_chunks(chunk_ids)
        return self._documents([Hit(chunk=c, score=0.0, rank=n) for n, c in enumerate(chunks, 1)], with_score=False)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` best chunks as Documents (kwargs: mode, source_prefix)."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """(Document, score) pairs, higher score = more relevant."""
        hits = self.kb.search(query, k=k, mode=kwargs.get("mode", self.mode), source_prefix=kwargs.get("source_prefix"))
        return list(zip(self._documents(hits), [h.score for h in hits]))

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      **kwargs: Any) -> list[Document]:
        """``k`` relevant but mutually diverse chunks (MMR over the KB's candidate pool)."""
        hits = self.kb.search(query, k=k, mode=kwargs.get("mode", self.mode), source_prefix=kwargs.get("source_prefix"),
                              mmr=lambda_mult)
        return self._documents(hits)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.mode == "dense":
            return lambda s: max(0.0, min(1.0, (1.0 + s) / 2.0))  # cosine in [-1, 1]
        if self.mode == "hybrid":
            return lambda s: max(0.0, min(1.0, s * 61.0 / 2.0))  # RRF: 2/61 is first in both rankings
        return lambda s: s / (1.0 + s) if s > 0 else 0.0  # BM25 is unbounded

    def _documents(self, hits: list[Hit], with_score: bool = True) -> list[Document]:
        extra = self.kb.document_metadata([h.chunk.source for h in hits if h.chunk.source.startswith(SOURCE_PREFIX)])
        docs = []
        for hit in hits:
            c = hit.chunk
            meta = {**extra.get(c.source, {}), "source": c.source, "title": c.title, "page": c.page,
                    "heading": c.heading, "start": c.start, "end": c.end, "chunk_id": c.chunk_id,
                    "position": c.position}
            if with_score:
                meta.update(score=hit.score, rank=hit.rank)
            doc_id = c.source[len(SOURCE_PREFIX):] if c.source.startswith(SOURCE_PREFIX) else c.chunk_id
            docs.append(Document(page_content=c.text, metadata=meta, id=doc_id))
        return docs

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | str | None = None,
                   metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
                   path: str | Path | None = None, mode: str = "hybrid", **kwargs: Any) -> "KnowledgeBaseVectorStore":
        """Create (or open) the knowledge base at ``path`` and add ``texts``.

        ``embedding`` names the embedder: a ``KnowledgeBaseEmbeddings``, anything with a
        sentence-transformers ``model_name`` (e.g. ``HuggingFaceEmbeddings``), a name, or None for the default.
        """
        if path is None:
            raise ValueError("from_texts needs path=<folder for the knowledge base>, e.g. workspace.kb_path('lc')")
        kb = KnowledgeBase.open(Path(path), embedder=_embedder_name(embedding), create=True)
        store = cls(kb, mode=mode)
        store.add_texts(texts, metadatas, ids=ids)
        return store


class KnowledgeBaseRetriever(BaseRetriever):
    """A LangChain retriever over a knowledge base: ``KnowledgeBaseRetriever(kb=kb, k=5, mode="hybrid")``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: KnowledgeBase
    k: int = 5
    mode: str = "hybrid"
    source_prefix: str | None = None
    mmr: float | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.kb.search(query, k=self.k, mode=self.mode, source_prefix=self.source_prefix, mmr=self.mmr)
        return KnowledgeBaseVectorStore(self.kb, self.mode)._documents(hits)


def _chunk_id_for(kb: KnowledgeBase, doc_id: str) -> str | None:
    chunks = kb.document_chunk_ids(SOURCE_PREFIX + str(doc_id))
    return chunks[0] if chunks else None


def _embedder_name(embedding: Any) -> str | None:
    if embedding is None or isinstance(embedding, str):
        return embedding
    if isinstance(embedding, KnowledgeBaseEmbeddings):
        return embedding.embedder.name
    name = getattr(embedding, "model_name", None)
    if isinstance(name, str):
        return name
    raise TypeError(f"cannot store vectors from {type(embedding).__name__}: a knowledge base needs a named "
                    "sentence-transformers embedder (pass its name or folder, or a HuggingFaceEmbeddings)")
