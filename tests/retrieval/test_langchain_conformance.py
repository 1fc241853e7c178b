"""LangChain's own conformance suites (langchain-tests) against the adapter.

The vector store runs with the suites' standard fake embeddings through
``KnowledgeBaseVectorStore(path=DIR, embedding=EMB)``, in dense and in hybrid mode. bm25-only
mode is left out on purpose: it ranks by shared words and so returns nothing for a query that
shares none with a document, while these tests expect every stored document back (they set no
relevance threshold).
"""

from __future__ import annotations

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from retrieval.langchain_adapter import KnowledgeBaseRetriever, KnowledgeBaseVectorStore

TEXTS = ["The ferry leaves at seven.", "Tickets cost four euros.", "The cafe closes at noon.",
         "Refunds take fourteen days.", "The office moved to Porto."]


class TestDenseVectorStore(VectorStoreIntegrationTests):
    mode = "dense"

    @pytest.fixture
    def vectorstore(self, tmp_path) -> VectorStore:
        store = KnowledgeBaseVectorStore(path=tmp_path / "kb", embedding=self.get_embeddings(), mode=self.mode)
        yield store
        store.kb.close()


class TestHybridVectorStore(TestDenseVectorStore):
    mode = "hybrid"


class TestRetriever(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _store(self, tmp_path):
        self.store = KnowledgeBaseVectorStore(path=tmp_path / "kb", embedding=DeterministicFakeEmbedding(size=8),
                                              mode="dense")
        self.store.add_texts(TEXTS)
        yield
        self.store.kb.close()

    @property
    def retriever_constructor(self) -> type[KnowledgeBaseRetriever]:
        return KnowledgeBaseRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"kb": self.store.kb, "mode": "dense"}

    @property
    def retriever_query_example(self) -> str:
        return "when does the ferry leave"
