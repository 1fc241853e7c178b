"""Ingest: loaders (one per format), token-sized chunking, and the pipeline into a knowledge base.

``from ingest import ingest_paths, remove_documents`` is the entry point (loaded lazily).
"""

from __future__ import annotations

__all__ = ["ingest_paths", "remove_documents", "IngestReport", "Failure"]


def __getattr__(name: str):
    if name in __all__:
        from ingest import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'ingest' has no attribute {name!r}")
