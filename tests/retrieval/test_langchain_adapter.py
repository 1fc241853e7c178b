import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda

from retrieval.errors import RetrievalError
from retrieval.knowledge_base import KnowledgeBase
from retrieval.langchain_adapter import KnowledgeBaseEmbeddings, KnowledgeBaseRetriever, KnowledgeBaseVectorStore

TEXTS = ["The ferry leaves at seven.", "Tickets cost four euros.", "The cafe closes at noon."]


def test_add_texts_then_search_returns_documents_with_ids_and_metadata(kb):
    store = KnowledgeBaseVectorStore(kb)
    ids = store.add_texts(TEXTS, metadatas=[{"source": "timetable.pdf", "page": 2}, {}, {"lang": "en"}], ids=["t1", "t2", "t3"])
    assert ids == ["t1", "t2", "t3"]
    docs = store.similarity_search("Tickets cost four euros.", k=2, mode="dense")
    assert docs[0].page_content == "Tickets cost four euros." and docs[0].id == "t2"
    ferry = store.similarity_search("ferry seven", k=1, mode="bm25")[0]
    assert ferry.metadata == {"source": "timetable.pdf", "page": 2}
    assert store.similarity_search("cafe noon", k=1, mode="bm25")[0].metadata["lang"] == "en"


def test_similarity_search_with_score_is_higher_is_better(kb):
    store = KnowledgeBaseVectorStore(kb, mode="dense")
    store.add_texts(TEXTS)
    pairs = store.similarity_search_with_score("The cafe closes at noon.", k=3)
    assert pairs[0][0].page_content == "The cafe closes at noon."
    assert [s for _, s in pairs] == sorted((s for _, s in pairs), reverse=True)
    relevance = store.similarity_search_with_relevance_scores("The cafe closes at noon.", k=3)
    assert all(0.0 <= s <= 1.0 for _, s in relevance)


def test_delete_and_get_by_ids_round_trip(kb):
    store = KnowledgeBaseVectorStore(kb)
    store.add_texts(TEXTS, ids=["a", "b", "c"])
    assert [d.page_content for d in store.get_by_ids(["c", "a"])] == [TEXTS[2], TEXTS[0]]
    assert store.delete(["b"]) is True
    assert store.get_by_ids(["b"]) == []
    assert store.delete(["nope"]) is False
    assert kb.stats()["chunks"] == 2 and kb.check() == []


def test_from_texts_creates_a_kb_with_the_named_embedder(workspace, tiny_embedder_path):
    store = KnowledgeBaseVectorStore.from_texts(TEXTS, tiny_embedder_path, path=workspace.kb_path("lc"))
    assert KnowledgeBase.open(workspace.kb_path("lc")).embedder_name == tiny_embedder_path
    assert store.similarity_search("tickets euros", k=1, mode="bm25")[0].page_content == TEXTS[1]
    again = KnowledgeBaseVectorStore.from_texts(["More."], KnowledgeBaseEmbeddings(store.kb.embedder), path=workspace.kb_path("lc"))
    assert again.kb.stats()["documents"] == 4


def test_as_retriever_and_retriever_plug_into_a_runnable_chain(kb):
    KnowledgeBaseVectorStore(kb).add_texts(TEXTS)
    for retriever in (KnowledgeBaseVectorStore(kb, mode="bm25").as_retriever(search_kwargs={"k": 1}),
                      KnowledgeBaseRetriever(kb=kb, k=1, mode="bm25")):
        chain = retriever | RunnableLambda(lambda docs: " | ".join(d.page_content for d in docs))
        assert chain.invoke("when does the ferry leave") == TEXTS[0]
    docs = KnowledgeBaseRetriever(kb=kb, k=2, mode="hybrid", provenance=True).invoke("ferry")
    assert all(isinstance(d, Document) and "chunk_id" in d.metadata["ragtune"] for d in docs)


def test_max_marginal_relevance_search_returns_k_documents(kb):
    store = KnowledgeBaseVectorStore(kb)
    store.add_texts(TEXTS + [TEXTS[0]])
    docs = store.max_marginal_relevance_search(TEXTS[0], k=2, lambda_mult=0.2)
    assert len(docs) == 2 and [d.page_content for d in docs].count(TEXTS[0]) == 1


def test_documents_without_ids_get_distinct_ids_and_a_later_add_overwrites_none(kb):
    store = KnowledgeBaseVectorStore(kb, mode="dense")
    ids = store.add_documents([Document("first"), Document("second", id="s"), Document("third")])
    assert len(set(ids)) == 3 and "None" not in ids and ids[1] == "s"
    store.add_documents([Document("fourth")])
    assert [d.page_content for d in store.get_by_ids(ids)] == ["first", "second", "third"]
    assert kb.stats()["documents"] == 4


@pytest.mark.parametrize("meta", [{"source": "a.pdf", "page": 3, "score": "high", "start": "monday"},
                                  {"title": 7, "chunk_id": ["x"], "rank": None}])
def test_callers_metadata_comes_back_unchanged_from_search_and_get_by_ids(kb, meta):
    store = KnowledgeBaseVectorStore(kb, mode="dense")
    store.add_texts(["The ferry leaves at seven."], metadatas=[meta], ids=["f"])
    found = store.similarity_search("The ferry leaves at seven.", k=1)[0]
    assert found == store.get_by_ids(["f"])[0] == Document("The ferry leaves at seven.", metadata=meta, id="f")
    with_provenance = KnowledgeBaseVectorStore(kb, mode="dense", provenance=True).similarity_search("ferry", k=1)[0]
    assert with_provenance.metadata["ragtune"]["source"] == "langchain:f"
    assert {k: v for k, v in with_provenance.metadata.items() if k != "ragtune"} == meta


def test_retriever_invoke_takes_k(kb):
    KnowledgeBaseVectorStore(kb).add_texts(TEXTS)
    retriever = KnowledgeBaseRetriever(kb=kb, k=3, mode="dense")
    assert len(retriever.invoke("ferry")) == 3
    assert len(retriever.invoke("ferry", k=1)) == 1


def test_vector_store_from_a_langchain_embedding_creates_and_reopens_its_kb(tmp_path):
    folder = tmp_path / "lc"
    store = KnowledgeBaseVectorStore(path=folder, embedding=DeterministicFakeEmbedding(size=12), mode="dense")
    store.add_texts(TEXTS, ids=["a", "b", "c"])
    store.kb.close()
    again = KnowledgeBaseVectorStore(path=folder, embedding=DeterministicFakeEmbedding(size=12), mode="dense")
    assert again.similarity_search(TEXTS[1], k=1)[0].id == "b"
    assert again.kb.stats()["dimension"] == 12
    again.kb.close()
    with pytest.raises(RetrievalError, match="DeterministicFakeEmbedding:12"):
        KnowledgeBaseVectorStore(path=folder, embedding=DeterministicFakeEmbedding(size=16))


def test_similarity_search_filter_keeps_only_matching_documents(kb):
    store = KnowledgeBaseVectorStore(kb, mode="dense")
    store.add_texts(TEXTS, metadatas=[{"lang": "en", "n": 1}, {"lang": "pt", "n": 2}, {"lang": "en", "n": 3}])
    assert [d.metadata["n"] for d in store.similarity_search(TEXTS[0], k=3, filter={"lang": "en"})] == [1, 3]
    assert [d.metadata["n"] for d in store.similarity_search(TEXTS[0], k=3, filter={"n": {"$in": [2, 3]}})] in ([2, 3], [3, 2])
    assert store.similarity_search(TEXTS[0], k=3, filter={"lang": "de"}) == []
    with pytest.raises(ValueError, match="not supported"):
        store.similarity_search(TEXTS[0], k=3, filter={"$or": [{"lang": "en"}]})
