"""Judge-free metrics for one answer to one question, registered by name.

Every metric is a function ``(item, answer, styles) -> float | None``: a score in [0, 1], or
``None`` where it does not apply (retrieval metrics in a mode without retrieval, citation
recall on an unanswerable question). ``METRICS`` maps names to them, as peft maps method names
to configs; ``score_answer`` runs them all. Aggregates over a run (latency percentiles,
tokens/s) are in ``aggregate_latency``.

``answer`` is anything with ``text``, ``citations`` (each with ``.chunk``), ``context`` (hits,
each with ``.chunk``) and ``abstained``: the assistant's ``Answer``.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evaluation.qa import QAItem
from evaluation.style import StyleCheck
from retrieval.citations import CITATION_PATTERN, is_abstention

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) - {"$"}
_APOSTROPHES = re.compile("[\u2018\u2019\u02bc\u0060\u00b4]")

# Function words that say nothing about grounding (SMART/NLTK-style list, trimmed).
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can could did do does doing done down during each either else etc even ever every few for from further get got
had has have having he her here hers herself him himself his how however i if in into is it its itself just least
less like made make many may me might more most much must my myself neither no nor not now of off on once one only or
other our ours ourselves out over own per please rather same she should since so some such than that the their theirs
them themselves then there these they this those though through thus to too under until up upon us use used very via
was we were what when where whether which while who whom whose why will with within without would yes yet you your
yours yourself yourselves according documents document answer cited cite
""".split())


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: drop [n] citations, lower-case, drop punctuation and articles, squeeze spaces."""
    text = CITATION_PATTERN.sub(" ", text or "")
    text = _APOSTROPHES.sub("'", unicodedata.normalize("NFKC", text).lower())
    # punctuation becomes a space (except . , ' handled below); currency symbols become words of their own
    text = "".join(f" {ch} " if unicodedata.category(ch) == "Sc"
                   else " " if (ch in _PUNCT or unicodedata.category(ch).startswith("P")) and ch not in ".,'"
                   else ch for ch in text)
    # "1,200" loses its thousands separator; a decimal "3.5" or "3,5" becomes "3.5" (so "5.5 minutes"
    # never matches "55 minutes"); a full stop or comma between words separates them.
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = re.sub(r"(?<=\d)[.,](?=\d)", "\0", text)
    text = re.sub(r"[.,']", lambda m: "" if m.group(0) == "'" else " ", text).replace("\0", ".")
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """The normalised words of ``text``."""
    return normalize_answer(text).split()


def content_words(text: str) -> list[str]:
    """Normalised words that carry meaning: stopwords removed."""
    return [t for t in tokens(text) if t not in STOPWORDS]


def contains_answer(text: str, answer: str) -> bool:
    """True if ``answer``'s normalised words occur, as whole words, inside ``text``'s."""
    needle = normalize_answer(answer)
    return bool(needle) and f" {needle} " in f" {normalize_answer(text)} "


# --- per-answer metrics --------------------------------------------------------------------

def correctness(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float:
    """1 if the answer contains an accepted answer (answerable) or abstains (unanswerable), else 0."""
    if not item.answerable:
        return float(_abstained(answer))
    if _abstained(answer):
        return 0.0
    return float(any(contains_answer(answer.text, a) for a in item.answers))


def token_f1(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float:
    """SQuAD token F1 against the best accepted answer (unanswerable: 1 for an abstention, else 0)."""
    if not item.answerable:
        return float(_abstained(answer))
    return max(f1_score(answer.text, a) for a in item.answers)


def rouge_l(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float:
    """ROUGE-L F-measure (token LCS) against the best accepted answer (unanswerable as token F1)."""
    if not item.answerable:
        return float(_abstained(answer))
    return max(rouge_l_score(answer.text, a) for a in item.answers)


def retrieval_hit_at_k(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """1 if any retrieved chunk comes from a gold source; None without sources or without retrieval."""
    ranks = _gold_ranks(item, answer)
    return None if ranks is None else float(bool(ranks))


def mrr(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """Reciprocal rank of the first retrieved chunk from a gold source (0 if none)."""
    ranks = _gold_ranks(item, answer)
    return None if ranks is None else (1.0 / ranks[0] if ranks else 0.0)


def citation_precision(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """Share of cited chunks that come from a gold source or contain an accepted answer; None if nothing is cited."""
    cited = _unique_cited(answer)
    if not cited or not item.answerable:
        return None
    return sum(_supports(item, c) for c in cited) / len(cited)


def citation_recall(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """Share of the evidence present in the context that the answer cites.

    Evidence units are the gold sources that appear in the retrieved context; without ``sources``
    the unit is "a chunk containing an accepted answer". None when the context holds no evidence.
    """
    context = [h.chunk for h in (answer.context or [])]
    if not item.answerable or not context:
        return None
    cited = _unique_cited(answer)
    if item.sources:
        present = {g for g in item.sources if any(source_matches(c.source, g) for c in context)}
        if not present:
            return None
        hit = {g for g in present if any(source_matches(c.source, g) for c in cited)}
        return len(hit) / len(present)
    if not any(_contains_any(c.text, item.answers) for c in context):
        return None
    return float(any(_contains_any(c.text, item.answers) for c in cited))


def groundedness(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """Share of the answer's content words found in the chunks it cites (0 when it cites nothing).

    None for abstentions, for answers without content words, and in modes without retrieved
    context (there is nothing to be grounded in).
    """
    if _abstained(answer) or not answer.context:
        return None
    words = content_words(answer.text)
    if not words:
        return None
    cited = _unique_cited(answer)
    support = set()
    for chunk in cited:
        support.update(tokens(chunk.text))
    return sum(w in support for w in words) / len(words)


def abstention_accuracy(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float:
    """1 if the answer abstains exactly when the question is unanswerable."""
    return float(_abstained(answer) == (not item.answerable))


def false_abstention(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """On answerable questions: 1 if the answer wrongly says it does not know (None on unanswerable ones)."""
    return float(_abstained(answer)) if item.answerable else None


def unanswerable_abstention(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """On unanswerable questions: 1 if the answer correctly abstains (None on answerable ones)."""
    return None if item.answerable else float(_abstained(answer))


def style(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None) -> float | None:
    """1 if the answer passes every rule of the question's style check; None if it names none."""
    if not item.style:
        return None
    check = (styles or {}).get(item.style)
    if check is None:
        raise KeyError(f"no style check named {item.style!r}")
    return float(check.passes(answer.text))


Metric = Callable[[QAItem, Any, "dict[str, StyleCheck] | None"], "float | None"]

METRICS: dict[str, Metric] = {
    "correctness": correctness,
    "token_f1": token_f1,
    "rouge_l": rouge_l,
    "retrieval_hit_at_k": retrieval_hit_at_k,
    "mrr": mrr,
    "citation_precision": citation_precision,
    "citation_recall": citation_recall,
    "groundedness": groundedness,
    "abstention_accuracy": abstention_accuracy,
    "false_abstention_rate": false_abstention,
    "unanswerable_abstention": unanswerable_abstention,
    "style": style,
}


def score_answer(item: QAItem, answer: Any, styles: dict[str, StyleCheck] | None = None,
                 metrics: Sequence[str] | None = None) -> dict[str, float | None]:
    """Every registered metric (or those named) for one answer."""
    return {name: METRICS[name](item, answer, styles) for name in (metrics or METRICS)}


# --- text scores ---------------------------------------------------------------------------

def f1_score(prediction: str, reference: str) -> float:
    """Token-overlap F1 between two texts after normalisation (SQuAD)."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_score(prediction: str, reference: str, beta: float = 1.0) -> float:
    """ROUGE-L F-measure between two texts (Lin 2004, with beta=1 as rouge-score computes it)."""
    pred, ref = tokens(prediction), tokens(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return (1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)


# --- run-level aggregates ------------------------------------------------------------------

def aggregate_latency(latencies: Sequence[float], tokens_out: Sequence[int], generation_s: Sequence[float]) -> dict:
    """p50/p95 latency (seconds) and decode throughput (tokens generated / generation seconds)."""
    lat = np.asarray([x for x in latencies if x is not None], dtype=float)
    gen_time = float(sum(s for s in generation_s if s))
    total_tokens = int(sum(t for t in tokens_out if t))
    return {
        "latency_p50_s": float(np.percentile(lat, 50)) if lat.size else None,
        "latency_p95_s": float(np.percentile(lat, 95)) if lat.size else None,
        "tokens_per_s": total_tokens / gen_time if gen_time > 0 else None,
    }


# --- helpers beside their only users -------------------------------------------------------

def source_matches(source: str, gold: str) -> bool:
    """True if ``gold`` is a path suffix of ``source`` on whole path components ("b/c.md" matches "/a/b/c.md")."""
    s = [p for p in source.replace("\\", "/").split("/") if p not in ("", ".")]
    g = [p for p in gold.replace("\\", "/").split("/") if p not in ("", ".")]
    return bool(g) and len(g) <= len(s) and s[-len(g):] == g


def _abstained(answer: Any) -> bool:
    flag = getattr(answer, "abstained", None)
    return bool(flag) or is_abstention(answer.text or "")


def _gold_ranks(item: QAItem, answer: Any) -> list[int] | None:
    if not item.sources or not item.answerable or not answer.context:
        return None
    return [rank for rank, hit in enumerate(answer.context, start=1)
            if any(source_matches(hit.chunk.source, g) for g in item.sources)]


def _unique_cited(answer: Any) -> list:
    seen, out = set(), []
    for citation in answer.citations or []:
        if citation.chunk.chunk_id not in seen:
            seen.add(citation.chunk.chunk_id)
            out.append(citation.chunk)
    return out


def _contains_any(text: str, answers: Sequence[str]) -> bool:
    return any(contains_answer(text, a) for a in answers)


def _supports(item: QAItem, chunk) -> bool:
    return any(source_matches(chunk.source, g) for g in item.sources) or _contains_any(chunk.text, item.answers)
