import json
import os

import pytest

from retrieval.errors import KBLockedError, RetrievalError
from retrieval.knowledge_base import KnowledgeBase
from retrieval.search import RRF_K, fts_query, fusion_window

from .conftest import CORPUS, write_docs


def test_opening_a_missing_kb_names_the_command_that_creates_it(workspace):
    with pytest.raises(RetrievalError, match=r"no knowledge base 'nope' at .*ragtune ingest PATH --kb nope"):
        KnowledgeBase.open(workspace.kb_path("nope"))
    assert not workspace.kb_path("nope").exists()


def test_a_creation_killed_before_its_schema_committed_is_created_again(workspace, tiny_embedder_path):
    path = workspace.kb_path("half")
    path.mkdir(parents=True)
    (path / "kb.sqlite").write_bytes(b"")
    with pytest.raises(RetrievalError, match="no knowledge base 'half'"):
        KnowledgeBase.open(path)
    assert KnowledgeBase.open(path, embedder=tiny_embedder_path, create=True).list_documents() == []


def test_a_corrupt_store_file_is_one_clear_error(workspace):
    path = workspace.kb_path("junk")
    path.mkdir(parents=True)
    (path / "kb.sqlite").write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(RetrievalError, match=r"kb.sqlite is not a readable knowledge base .*re-ingest"):
        KnowledgeBase.open(path)


def test_embedder_is_fixed_at_creation_and_saved_in_the_manifest(kb, tiny_embedder_path):
    manifest = json.loads((kb.path / "manifest.json").read_text())
    assert manifest["embedder"] == tiny_embedder_path
    assert KnowledgeBase.open(kb.path).embedder_name == tiny_embedder_path
    with pytest.raises(RetrievalError, match="was built with embedder"):
        KnowledgeBase.open(kb.path, embedder="all-minilm-l6-v2")


def test_dense_search_ranks_a_chunk_first_for_its_own_text(corpus_kb):
    hits = corpus_kb.search("The office opened in 1998 in Lisbon.", k=3, mode="dense")
    assert hits[0].chunk.text == "The office opened in 1998 in Lisbon."
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_search_matches_keywords_with_positive_descending_scores(corpus_kb):
    hits = corpus_kb.search("gift cards refunded", k=5, mode="bm25")
    assert hits[0].chunk.text.startswith("Gift cards")
    assert all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all("gift" in h.chunk.text.lower() or "refund" in h.chunk.text.lower() for h in hits)


def test_bm25_uses_stemming_so_plural_and_verb_forms_match(corpus_kb):
    hits = corpus_kb.search("refund", mode="bm25")
    assert {h.chunk.text for h in hits} == set(CORPUS["/docs/refunds.md"])


def test_hybrid_score_is_the_reciprocal_rank_fusion_of_dense_and_bm25(corpus_kb):
    query = "when did the office open in Lisbon"
    window = fusion_window(5)
    dense = [h.chunk.chunk_id for h in corpus_kb.search(query, k=window, mode="dense")]
    sparse = [h.chunk.chunk_id for h in corpus_kb.search(query, k=window, mode="bm25")]
    expected = {}
    for ranking in (dense, sparse):
        for rank, cid in enumerate(ranking, 1):
            expected[cid] = expected.get(cid, 0) + 1 / (RRF_K + rank)
    hits = corpus_kb.search(query, k=5, mode="hybrid")
    assert {h.chunk.chunk_id: pytest.approx(h.score) for h in hits} == {
        cid: pytest.approx(expected[cid]) for cid in [h.chunk.chunk_id for h in hits]}
    assert hits[0].chunk.text == "The office opened in 1998 in Lisbon."


@pytest.mark.parametrize("query", ['AND OR NOT', '"unterminated', 'NEAR(office Lisbon)', 'office*', 'col:office',
                                   '^office', '(((', "it's - a - test", "office -Lisbon +Porto", "{}[]"])
def test_fts_syntax_in_a_query_never_raises(corpus_kb, query):
    corpus_kb.search(query, mode="bm25")
    corpus_kb.search(query, mode="hybrid")


def test_a_query_without_words_finds_nothing_by_bm25(corpus_kb):
    assert fts_query("?!*") == ""
    assert corpus_kb.search("?!* ---", mode="bm25") == []


def test_source_prefix_limits_every_mode(corpus_kb):
    for mode in ("dense", "bm25", "hybrid"):
        hits = corpus_kb.search("office refunds ferry harbour", k=10, mode=mode, source_prefix="/docs/")
        assert hits and all(h.chunk.source.startswith("/docs/") for h in hits), mode
    assert corpus_kb.search("ferry", k=10, mode="bm25", source_prefix="/nowhere") == []


def test_source_prefix_with_like_wildcards_is_literal(corpus_kb):
    assert corpus_kb.search("office", mode="bm25", source_prefix="/d%") == []
    assert corpus_kb.search("office", mode="bm25", source_prefix="/do_s") == []


def test_mmr_trades_a_near_duplicate_for_a_different_chunk(kb):
    text = "The harbour office sells ferry tickets to the islands."
    write_docs(kb, {"/a.txt": [text], "/b.txt": [text], "/c.txt": ["Ferry tickets are also sold online."]})
    plain = kb.search(text, k=2, mode="dense")
    assert {h.chunk.source for h in plain} == {"/a.txt", "/b.txt"}
    diverse = kb.search(text, k=2, mode="dense", mmr=0.3)
    assert {h.chunk.source for h in diverse} == {"/a.txt", "/c.txt"} or {h.chunk.source for h in diverse} == {"/b.txt", "/c.txt"}
    assert [h.rank for h in diverse] == [1, 2]


@pytest.mark.parametrize("kwargs, message", [
    ({"query": "  "}, "query is empty"), ({"query": "x", "k": 0}, "k must be"), ({"query": "x", "mode": "fuzzy"}, "unknown search mode"),
    ({"query": "x", "mmr": 1.5}, "between 0 and 1"),
])
def test_bad_search_arguments_are_user_errors(corpus_kb, kwargs, message):
    with pytest.raises(RetrievalError, match=message):
        corpus_kb.search(**kwargs)


def test_searching_an_empty_kb_returns_no_hits(kb):
    assert kb.search("anything", mode="hybrid") == []


def test_hit_to_dict_has_the_search_json_fields(corpus_kb):
    row = corpus_kb.search("ferry", k=1)[0].to_dict()
    assert list(row) == ["rank", "score", "source", "title", "page", "heading", "start", "end", "chunk_id", "text"]
    assert row["source"] == "/other/ferry.md" and row["rank"] == 1


def test_get_chunks_keeps_the_requested_order_and_skips_unknown_ids(corpus_kb):
    ids = [c.chunk_id for c in corpus_kb.iter_chunks()]
    got = corpus_kb.get_chunks([ids[3], "no-such-id", ids[0]])
    assert [c.chunk_id for c in got] == [ids[3], ids[0]]


def test_iter_chunks_yields_every_chunk_by_source_then_position(corpus_kb):
    chunks = list(corpus_kb.iter_chunks())
    assert [(c.source, c.position) for c in chunks] == sorted((s, i) for s, t in CORPUS.items() for i in range(len(t)))
    assert chunks[0].text == CORPUS["/docs/office.txt"][0]


def test_list_documents_and_stats_count_what_was_written(corpus_kb, tiny_embedder_path):
    docs = corpus_kb.list_documents()
    assert [d.source for d in docs] == sorted(CORPUS)
    assert [d.chunks for d in docs] == [len(CORPUS[d.source]) for d in docs]
    stats = corpus_kb.stats()
    assert (stats["documents"], stats["chunks"], stats["vectors"]) == (3, 5, 5)
    assert stats["embedder"] == tiny_embedder_path and stats["dimension"] == 64
    assert stats["generation"] == 1 and stats["index"].startswith("flat")
    assert stats["size_bytes"] > 0


def test_document_path_is_given_only_for_files_that_exist(kb, tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("x")
    assert kb.document_path(str(real)) == real
    assert kb.document_path(str(tmp_path / "gone.txt")) is None
    assert kb.document_path("langchain:abc") is None


def test_a_second_writer_is_refused_with_the_holders_pid(kb):
    with kb.writer():
        other = KnowledgeBase.open(kb.path)
        with pytest.raises(KBLockedError, match=rf"knowledge base 't' is locked by pid {os.getpid()} \(ingest running\?\); wait or stop it"):
            with other.writer():
                pass
    with other.writer():  # released when the first writer is done
        pass


def test_readers_are_not_blocked_while_a_writer_holds_the_lock(filled_kb):
    with filled_kb.writer():
        reader = KnowledgeBase.open(filled_kb.path)
        assert reader.search("ferry", mode="bm25")[0].chunk.source == "/other/ferry.md"
        assert len(reader.list_documents()) == 3


def test_another_open_kb_sees_a_write_at_its_next_search(filled_kb):
    other = KnowledgeBase.open(filled_kb.path)
    assert other.search("tram depot", mode="bm25") == []
    write_docs(filled_kb, {"/docs/tram.txt": ["The tram depot is next to the station."]}, removals=["/other/ferry.md"])
    assert other.search("The tram depot is next to the station.", mode="dense", k=1)[0].chunk.source == "/docs/tram.txt"
    assert all(h.chunk.source != "/other/ferry.md" for h in other.search("ferry harbour", k=10, mode="dense"))


def test_replacing_a_document_leaves_no_trace_of_its_old_chunks(filled_kb):
    write_docs(filled_kb, {"/docs/refunds.md": ["Refunds now take thirty days."]})
    assert filled_kb.search("gift cards", mode="bm25") == []
    texts = {h.chunk.text for h in filled_kb.search("Gift cards cannot be refunded under any circumstances.", k=10, mode="dense")}
    assert "Gift cards cannot be refunded under any circumstances." not in texts
    assert filled_kb.check() == []
    assert filled_kb.stats()["chunks"] == 4


def test_a_manifest_that_cannot_be_written_is_a_warning_not_a_failed_write(kb, monkeypatch, caplog):
    import pathlib

    real = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name.startswith(".manifest.json"):
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    write_docs(kb, {"a.md": ["The kiln fires at dawn."]})  # the writer's exit rewrites the manifest
    assert [d.source for d in kb.list_documents()] == ["a.md"]
    assert "not updated" in caplog.text and "No space left" in caplog.text
    assert not list(kb.path.glob(".manifest.json.*.tmp"))
