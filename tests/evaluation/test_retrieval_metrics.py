"""Answer-chunk retrieval metrics: a hit counts only when it is a chunk of a source that holds the answer."""

from __future__ import annotations

from evaluation.qa import QAItem
from evaluation.retrieval_metrics import answer_chunk_rank, holds_answer, share_within
from retrieval.records import Chunk


def _chunk(source: str, text: str, n: int = 0) -> Chunk:
    return Chunk(f"c{n}", source, source, text, 0, len(text))


def test_rank_is_that_of_the_first_chunk_from_a_source_holding_an_accepted_answer():
    item = QAItem("q1", "How many tables can one join hold?", ("64",), sources=("docs/limits.html",))
    hits = [_chunk("/kb/docs/faq.html", "A join of 64 tables is rare.", 0),      # answer, wrong document
            _chunk("/kb/docs/limits.html", "Maximum Number Of Tables In A Join", 1),  # right document, no answer
            _chunk("/kb/docs/limits.html", "SQLite does not support joins containing more than 64 tables.", 2)]
    assert answer_chunk_rank(item, hits) == 3


def test_no_chunk_holding_the_answer_gives_no_rank():
    item = QAItem("q2", "Which option removes source files?", ("--rm",), sources=("man/zstd.pdf",))
    hits = [_chunk("/kb/man/zstd.pdf", "Source files are preserved by default.", 0),
            _chunk("/kb/man/xz.pdf", "Use --rm to remove them.", 1)]
    assert answer_chunk_rank(item, hits) is None


def test_answers_match_as_the_grader_matches_them_whole_words_after_normalising():
    item = QAItem("q3", "Default length limit?", ("1,000,000,000",), sources=("limits.html",))
    assert holds_answer(item, _chunk("/d/limits.html", "The default value of this macro is 1000000000 bytes."))
    sixty_four = QAItem("q4", "Join limit?", ("64",), sources=("limits.html",))
    assert not holds_answer(sixty_four, _chunk("/d/limits.html", "A page of 640 bytes."))


def test_without_sources_any_chunk_holding_the_answer_counts():
    item = QAItem("q5", "Which environment variable sets jq's colours?", ("JQ_COLORS",))
    assert answer_chunk_rank(item, [_chunk("/x/jq.txt", "Set JQ_COLORS to change them.")]) == 1


def test_share_within_k_counts_missing_ranks_as_misses_and_is_none_for_no_questions():
    ranks = [1, 3, None, 6]
    assert share_within(ranks, 1) == 0.25
    assert share_within(ranks, 5) == 0.5
    assert share_within([], 5) is None
