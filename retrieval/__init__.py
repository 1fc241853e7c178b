"""Retrieval: the knowledge base (SQLite + FAISS store), dense/BM25/hybrid search, citations.

``from retrieval import KnowledgeBase`` is the entry point; submodules load lazily so importing
``retrieval.records`` or ``retrieval.citations`` stays free of FAISS and torch.
"""

from __future__ import annotations

__all__ = ["KnowledgeBase", "KnowledgeBaseSettings", "Chunk", "Hit", "DocumentInfo", "RetrievalError", "KBLockedError"]

_LAZY = {
    "KnowledgeBase": "retrieval.knowledge_base", "KnowledgeBaseSettings": "retrieval.knowledge_base",
    "Chunk": "retrieval.records", "Hit": "retrieval.records", "DocumentInfo": "retrieval.records",
    "RetrievalError": "retrieval.errors", "KBLockedError": "retrieval.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
