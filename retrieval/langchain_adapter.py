"""The knowledge base as LangChain parts: a ``VectorStore``, a ``BaseRetriever`` and ``Embeddings``.

    from retrieval.langchain_adapter import KnowledgeBaseRetriever, KnowledgeBaseVectorStore
    store = KnowledgeBaseVectorStore(KnowledgeBase.open(path))
    store = KnowledgeBaseVectorStore(path="kb-folder", embedding=any_langchain_embeddings)  # opens or creates
    retriever = store.as_retriever(search_kwargs={"k": 5})        # or KnowledgeBaseRetriever(kb=store.kb, k=5)
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | llm

``add_texts`` / ``add_documents`` store each text as a one-chunk document with source
``langchain:<id>`` (an id is made for a document without one; texts longer than the embedder's
window are embedded truncated: split them first); ``delete(ids)`` removes them again. Such a
document comes back exactly as it was stored: its id, its text and the caller's metadata, untouched.
Chunks that ``ragtune ingest`` wrote carry their citation provenance as metadata instead (source,
title, page, heading, start, end, chunk_id, position, score, rank). With ``provenance=True`` every
result also carries that provenance under the one key ``"ragtune"``, where it cannot collide with
the caller's keys. Searches take ``filter``: ``{key: value}`` (all must match; a value may also be
``{"$eq"|"$ne"|"$in"|"$nin": ...}``) or a function of the metadata. The LangChain conformance
suites (langchain-tests) run against this module in tests/retrieval/test_langchain_conformance.py.
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
PROVENANCE_KEY = "ragtune"
_FILTER_OPERATORS = {"$eq": lambda v, x: v == x, "$ne": lambda v, x: v != x,
                     "$in": lambda v, x: v in x, "$nin": lambda v, x: v not in x}


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


class LangChainEmbedder:
    """Any LangChain ``Embeddings`` in the shape a knowledge base embeds with (``Embedder``'s methods):
    normalized float32 arrays, under a name that records the class, its model and its dimension."""

    def __init__(self, embedding: Embeddings):
        self.embedding = embedding
        self.dimension = len(embedding.embed_query("dimension"))
        model = next((getattr(embedding, a) for a in ("model_name", "model") if isinstance(getattr(embedding, a, None), str)),
                     None)
        self.name = f"{SOURCE_PREFIX}{type(embedding).__name__}" + (f":{model}" if model else "") + f":{self.dimension}"

    def embed_documents(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """float32 array (n, dim), L2-normalized."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _normalized(np.asarray(self.embedding.embed_documents(list(texts)), dtype=np.float32))

    def embed_query(self, text: str) -> np.ndarray:
        """float32 array (dim,), L2-normalized."""
        return _normalized(np.asarray([self.embedding.embed_query(text)], dtype=np.float32))[0]


def _normalized(vecs: np.ndarray) -> np.ndarray:
    vecs = np.ascontiguousarray(vecs.reshape(len(vecs), -1))
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


class KnowledgeBaseVectorStore(VectorStore):
    """A ``KnowledgeBase`` behind LangChain's ``VectorStore`` interface; ``mode`` picks dense, bm25 or hybrid.

    ``KnowledgeBaseVectorStore(kb)`` wraps an open knowledge base (its own embedder);
    ``KnowledgeBaseVectorStore(path=DIR, embedding=EMB)`` opens the one in DIR, or creates it, to
    embed with any LangChain ``Embeddings`` (the KB records its name and dimension, and opening it
    with another is an error). ``provenance=True`` adds the ``"ragtune"`` metadata key to results.
    """

    def __init__(self, kb: KnowledgeBase | None = None, mode: str = "hybrid", *, path: str | Path | None = None,
                 embedding: Embeddings | None = None, provenance: bool = False):
        if (kb is None) == (path is None):
            raise ValueError("give either an open knowledge base (kb) or path=<its folder>, not both")
        self._embedding = embedding
        if kb is None:
            embedder = LangChainEmbedder(embedding) if embedding is not None else None
            kb = KnowledgeBase.open(Path(path), embedder=embedder.name if embedder else None, create=True)
            if embedder is not None:
                kb.use_embedder(embedder)
        elif embedding is not None:
            raise ValueError("a knowledge base embeds with its own embedder: pass embedding= only with path=")
        self.kb = kb
        self.mode = mode
        self.provenance = provenance

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding if self._embedding is not None else KnowledgeBaseEmbeddings(self.kb.embedder)

    # -- writing ---------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Store each text as a one-chunk document (replacing one with the same id); returns the ids."""
        texts = list(texts)
        metadatas = [dict(m or {}) for m in metadatas] if metadatas is not None else [{} for _ in texts]
        ids = list(ids) if ids is not None else [None] * len(texts)
        # a document without an id gets a new one (not the text "None", which two of them would share)
        ids = [uuid.uuid4().hex if i is None or i == "" else str(i) for i in ids]
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
            page = meta.get("page") if isinstance(meta.get("page"), int) and not isinstance(meta.get("page"), bool) else None
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
        """Remove the documents with these ids (from ``add_texts``) or these sources; True if all were found
        (ids that are not stored are skipped, as LangChain expects)."""
        if not ids:
            return False
        with self.kb.writer() as writer:
            stored = set(writer.sources())
            found = list(dict.fromkeys(s for i in ids for s in (SOURCE_PREFIX + str(i), str(i)) if s in stored))
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
        """The ``k`` best chunks as Documents (kwargs: mode, source_prefix, filter)."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """(Document, score) pairs, higher score = more relevant."""
        return self._search(query, k, None, kwargs)

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      **kwargs: Any) -> list[Document]:
        """``k`` relevant but mutually diverse chunks (MMR over the KB's candidate pool)."""
        return [doc for doc, _ in self._search(query, k, lambda_mult, kwargs)]

    def _search(self, query: str, k: int, mmr: float | None, kwargs: dict) -> list[tuple[Document, float]]:
        keep = _metadata_filter(kwargs.get("filter"))
        mode, prefix = kwargs.get("mode", self.mode), kwargs.get("source_prefix")
        if keep is None:
            hits = self.kb.search(query, k=k, mode=mode, source_prefix=prefix, mmr=mmr)
            return list(zip(self._documents(hits), [h.score for h in hits]))
        # the filter reads metadata the index does not hold: rank every chunk, keep the first k that match
        everything = max(self.kb.stats()["chunks"], 1)
        hits = self.kb.search(query, k=everything, mode=mode, source_prefix=prefix, mmr=mmr)
        pairs = [(doc, h.score) for doc, h in zip(self._documents(hits), hits) if keep(self._caller_metadata(doc))]
        return pairs[:k]

    def _caller_metadata(self, doc: Document) -> dict:
        return {key: value for key, value in doc.metadata.items() if not (self.provenance and key == PROVENANCE_KEY)}

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
            provenance = {"source": c.source, "title": c.title, "page": c.page, "heading": c.heading, "start": c.start,
                          "end": c.end, "chunk_id": c.chunk_id, "position": c.position}
            if with_score:
                provenance.update(score=hit.score, rank=hit.rank)
            if c.source.startswith(SOURCE_PREFIX):  # stored through LangChain: the caller's metadata, as given
                doc_id, meta = c.source[len(SOURCE_PREFIX):], dict(extra.get(c.source, {}))
            else:  # written by ragtune ingest: the provenance is its metadata
                doc_id, meta = c.chunk_id, dict(provenance)
            if self.provenance:
                meta[PROVENANCE_KEY] = provenance
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
        if isinstance(embedding, Embeddings) and not isinstance(embedding, KnowledgeBaseEmbeddings) \
                and not isinstance(getattr(embedding, "model_name", None), str):
            store = cls(path=path, embedding=embedding, mode=mode)  # any LangChain embeddings: vectors from it
        else:
            store = cls(KnowledgeBase.open(Path(path), embedder=_embedder_name(embedding), create=True), mode=mode)
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
    filter: dict | None = None
    provenance: bool = False

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        """The best chunks; ``invoke(query, k=..., filter=..., mode=...)`` overrides the retriever's own."""
        store = KnowledgeBaseVectorStore(self.kb, kwargs.get("mode", self.mode), provenance=self.provenance)
        options = {"mode": store.mode, "source_prefix": kwargs.get("source_prefix", self.source_prefix),
                   "filter": kwargs.get("filter", self.filter)}
        pairs = store._search(query, int(kwargs.get("k", self.k)), kwargs.get("mmr", self.mmr), options)
        return [doc for doc, _ in pairs]


def _metadata_filter(spec: Any) -> Callable[[dict], bool] | None:
    """A predicate on a document's metadata for ``filter=``: None, a function, or ``{key: value or {op: x}}``."""
    if spec is None:
        return None
    if callable(spec):
        return spec
    if not isinstance(spec, dict):
        raise ValueError(f"filter must be a dict of metadata values or a function of the metadata, got {spec!r}")
    tests = []
    for key, want in spec.items():
        if key.startswith("$"):
            raise ValueError(f"filter operator {key!r} is not supported: give {{key: value}} pairs (all must match) "
                             f"or a function of the metadata")
        if isinstance(want, dict):
            unknown = [op for op in want if op not in _FILTER_OPERATORS]
            if unknown:
                raise ValueError(f"filter on {key!r}: unsupported operator {unknown[0]!r}; "
                                 f"use one of {', '.join(_FILTER_OPERATORS)}")
            tests += [(key, op, _FILTER_OPERATORS[op], x) for op, x in want.items()]
        else:
            tests.append((key, "$eq", _FILTER_OPERATORS["$eq"], want))
    def keep(meta: dict) -> bool:
        # a key the document lacks matches only the negative tests ($ne, $nin)
        return all(test(meta[key], x) if key in meta else op in ("$ne", "$nin") for key, op, test, x in tests)

    return keep


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
