"""Knowledge bases built with the tiny embedder; documents written straight through the store."""

from __future__ import annotations

import hashlib

import pytest

from retrieval.embedding import Embedder
from retrieval.knowledge_base import KnowledgeBase
from retrieval.records import Chunk
from retrieval.store import DocumentWrite

CORPUS = {
    "/docs/refunds.md": ["Refunds are issued within 14 days of purchase.",
                         "Gift cards cannot be refunded under any circumstances."],
    "/docs/office.txt": ["The office opened in 1998 in Lisbon.", "It moved to Porto in 2010."],
    "/other/ferry.md": ["The ferry leaves the harbour at seven every weekday morning."],
}


def document(kb: KnowledgeBase, source: str, texts: list[str], title: str | None = None) -> DocumentWrite:
    """A DocumentWrite of one chunk per text, embedded with the KB's embedder."""
    sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    chunks, offset = [], 0
    for i, text in enumerate(texts):
        chunks.append(Chunk(chunk_id=f"{hashlib.sha256(source.encode()).hexdigest()[:8]}-{sha[:8]}-{i}", source=source,
                            title=title or source.rsplit("/", 1)[-1], text=text, start=offset,
                            end=offset + len(text), heading=f"Section {i}", position=i))
        offset += len(text) + 1
    return DocumentWrite(source=source, title=chunks[0].title if chunks else "", format="txt", sha256=sha,
                         chunks=chunks, vectors=kb.embedder.embed_documents(texts))


def write_docs(kb: KnowledgeBase, docs: dict[str, list[str]], removals: list[str] = ()) -> int:
    """Write ``docs`` (source -> chunk texts) in one transaction; returns the generation."""
    with kb.writer() as writer:
        return writer.write(upserts=[document(kb, s, t) for s, t in docs.items()], removals=list(removals))


@pytest.fixture
def kb(workspace, tiny_embedder_path):
    """An empty knowledge base named 't' using the tiny embedder."""
    base = KnowledgeBase.open(workspace.kb_path("t"), embedder=tiny_embedder_path, create=True)
    yield base
    base.close()


@pytest.fixture
def filled_kb(kb):
    """``kb`` holding CORPUS."""
    write_docs(kb, CORPUS)
    return kb


@pytest.fixture(scope="module")
def corpus_kb(tmp_path_factory, tiny_embedder_path):
    """A KB holding CORPUS shared by a module's read-only tests (tests that write use ``filled_kb``)."""
    base = KnowledgeBase.open(tmp_path_factory.mktemp("corpus") / "corpus", embedder=tiny_embedder_path, create=True)
    write_docs(base, CORPUS)
    yield base
    base.close()


@pytest.fixture(scope="module")
def tiny_embedder(tiny_embedder_path) -> Embedder:
    """The tiny config-built embedder (random weights: similarity is noise, words decide)."""
    return Embedder(tiny_embedder_path)
