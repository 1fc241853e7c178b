"""Every metric on hand-made answers with known values."""

from dataclasses import dataclass, field

import pytest

from evaluation.metrics import (METRICS, aggregate_latency, contains_answer, lcs_length, normalize_answer,
                                rouge_l_score, score_answer, source_matches)
from evaluation.qa import QAItem
from evaluation.style import parse_style_check
from retrieval.citations import NO_ANSWER, Citation, resolve_citations
from retrieval.records import Chunk, Hit


def chunk(i, text, source=None):
    return Chunk(chunk_id=f"c{i}", source=source or f"/kb/doc{i}.md", title=f"Doc {i}", text=text, start=0, end=len(text))


@dataclass
class Ans:
    """The fields of assistant.records.Answer that metrics read."""

    text: str
    context: list = field(default_factory=list)
    citations: list = field(default_factory=list)
    abstained: bool = False


def answer(text, chunks=()):
    hits = [Hit(c, 1.0 / r, r) for r, c in enumerate(chunks, start=1)]
    citations, _ = resolve_citations(text, hits)
    return Ans(text, hits, citations)


ITEM = QAItem(id="q1", question="When did the Oslo office open?", answers=("March 2019",), sources=("kb/oslo.md",))
NOANS = QAItem(id="q2", question="Who is the CEO of Mars?", answers=(), answerable=False)
OSLO = chunk(1, "The Oslo office opened in March 2019 with 12 staff.", "/data/kb/oslo.md")
OTHER = chunk(2, "The Bergen office has a rooftop garden.", "/data/kb/bergen.md")


def test_normalisation_drops_case_punctuation_articles_and_citations():
    assert normalize_answer("The Office, opened in March-2019 [2]!") == "office opened in march 2019"
    assert normalize_answer("It cost $1,200.50.") == "it cost $ 1200.50"
    assert normalize_answer("€19,80 or 19.80") == "€ 19.80 or 19.80"
    assert not contains_answer("The crossing takes 5.5 minutes.", "55 minutes")
    assert contains_answer("It costs €12,900 in total.", "12900")


def test_containment_is_on_whole_words():
    assert contains_answer("It opened in March 2019 [1].", "march 2019")
    assert not contains_answer("It has 120 staff", "12")


def test_correctness_counts_an_accepted_answer_inside_a_longer_answer():
    assert METRICS["correctness"](ITEM, answer("The Oslo office opened in March 2019 [1].")) == 1.0
    assert METRICS["correctness"](ITEM, answer("It opened in 2018.")) == 0.0


def test_correctness_on_unanswerable_rewards_only_abstention():
    assert METRICS["correctness"](NOANS, answer(NO_ANSWER)) == 1.0
    assert METRICS["correctness"](NOANS, answer("Elon Musk.")) == 0.0


def test_an_abstention_is_wrong_on_an_answerable_question_even_if_it_mentions_the_answer():
    assert METRICS["correctness"](ITEM, Ans("I don't know if it was March 2019.", abstained=True)) == 0.0


def test_token_f1_matches_squad_arithmetic():
    # pred tokens: opened in march 2019 (4); gold: march 2019 (2); overlap 2 -> P=0.5 R=1 F1=2/3
    assert METRICS["token_f1"](ITEM, answer("Opened in March 2019")) == pytest.approx(2 / 3)


def test_rouge_l_uses_the_longest_common_subsequence():
    assert lcs_length("a b c d e".split(), "a c e x".split()) == 3
    # pred "police killed gunman" vs ref "police kill gunman": LCS 2, P=R=2/3 -> F=2/3 (Lin 2004's example)
    assert rouge_l_score("police killed the gunman", "the police kill the gunman") == pytest.approx(2 / 3)
    assert METRICS["rouge_l"](ITEM, answer("march 2019")) == 1.0


def test_hit_at_k_and_mrr_match_gold_sources_on_path_suffix():
    ans = answer("x", [OTHER, OSLO])
    assert METRICS["retrieval_hit_at_k"](ITEM, ans) == 1.0
    assert METRICS["mrr"](ITEM, ans) == 0.5
    assert METRICS["mrr"](ITEM, answer("x", [OTHER])) == 0.0


def test_retrieval_metrics_do_not_apply_without_context_or_sources():
    assert METRICS["retrieval_hit_at_k"](ITEM, answer("x")) is None
    assert METRICS["mrr"](QAItem(id="q", question="q", answers=("a",)), answer("x", [OSLO])) is None


def test_source_suffix_matches_whole_components_only():
    assert source_matches("/data/kb/oslo.md", "kb/oslo.md")
    assert source_matches("kb/oslo.md", "./kb/oslo.md")
    assert not source_matches("/data/kb/big-oslo.md", "oslo.md")


def test_citation_precision_counts_gold_source_or_answer_bearing_chunks():
    other_with_answer = chunk(3, "Since March 2019 Oslo has grown.", "/kb/history.md")
    ans = answer("March 2019 [1][2][3].", [OSLO, OTHER, other_with_answer])
    assert METRICS["citation_precision"](ITEM, ans) == pytest.approx(2 / 3)
    assert METRICS["citation_precision"](ITEM, answer("March 2019.", [OSLO])) is None


def test_citation_recall_is_the_share_of_gold_sources_in_context_that_are_cited():
    item = QAItem(id="q", question="q", answers=("x",), sources=("oslo.md", "bergen.md"))
    assert METRICS["citation_recall"](item, answer("x [1].", [OSLO, OTHER])) == 0.5
    assert METRICS["citation_recall"](item, answer("x [1][2].", [OSLO, OTHER])) == 1.0
    assert METRICS["citation_recall"](item, answer("x.", [chunk(9, "unrelated")])) is None


def test_groundedness_is_the_share_of_content_words_found_in_cited_chunks():
    # content words: oslo office opened march 2019 paris  -> 5 of 6 in the cited chunk
    ans = answer("The Oslo office opened in March 2019 in Paris [1].", [OSLO, OTHER])
    assert METRICS["groundedness"](ITEM, ans) == pytest.approx(5 / 6)
    assert METRICS["groundedness"](ITEM, answer("The Oslo office opened in March 2019.", [OSLO])) == 0.0
    assert METRICS["groundedness"](ITEM, answer("The Oslo office opened in March 2019.")) is None


def test_abstention_accuracy_and_false_abstention():
    assert METRICS["abstention_accuracy"](NOANS, answer(NO_ANSWER)) == 1.0
    assert METRICS["abstention_accuracy"](ITEM, answer(NO_ANSWER)) == 0.0
    assert METRICS["false_abstention_rate"](ITEM, answer(NO_ANSWER)) == 1.0
    assert METRICS["false_abstention_rate"](NOANS, answer(NO_ANSWER)) is None
    assert METRICS["unanswerable_abstention"](NOANS, answer("Elon Musk.")) == 0.0


def test_style_check_needs_every_rule_to_pass():
    check = parse_style_check("voice", {"required_phrases": ["Kind regards"], "regex": r"\[\d+\]", "max_words": 12})
    item = QAItem(id="q", question="q", answers=("x",), style="voice")
    assert METRICS["style"](item, answer("It is x [1]. Kind regards, Ops"), {"voice": check}) == 1.0
    assert check.results("It is x. Kind regards") == {"required_phrases": True, "regex": False, "max_words": True}
    long = "word " * 13 + "[1] kind regards"
    assert METRICS["style"](item, answer(long), {"voice": check}) == 0.0
    assert METRICS["style"](ITEM, answer("x")) is None


def test_format_rule_recognises_bullets():
    check = parse_style_check("list", {"format": "bullets"})
    assert check.passes("Steps:\n- one\n- two")
    assert not check.passes("One paragraph only.")


def test_score_answer_runs_every_registered_metric():
    scores = score_answer(ITEM, answer("March 2019 [1].", [OSLO]))
    assert set(scores) == set(METRICS)
    assert scores["correctness"] == 1.0 and scores["citation_precision"] == 1.0


def test_latency_percentiles_and_tokens_per_second():
    agg = aggregate_latency([1.0, 2.0, 3.0, 4.0, 5.0], [10, 20, 30, 40, 50], [1, 1, 1, 1, 1])
    assert agg["latency_p50_s"] == 3.0
    assert agg["latency_p95_s"] == pytest.approx(4.8)
    assert agg["tokens_per_s"] == 30.0


def test_curly_apostrophes_and_currency_symbols_normalise_like_plain_ones():
    assert normalize_answer("Heron’s Gift") == normalize_answer("Heron's Gift") == normalize_answer("Herons Gift")
    assert contains_answer("A ticket costs €19.80 [1].", "19,80")
    assert contains_answer("A ticket costs €19.80 [1].", "€19.80")


def test_required_phrases_are_case_sensitive():
    check = parse_style_check("house", {"required_phrases": ["Good tide!"]})
    assert check.passes("Good tide! Yes.") and not check.passes("good tide! yes.")
