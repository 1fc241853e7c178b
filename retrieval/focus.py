"""Context focus: the few sentences of the retrieved chunks that answer the question.

A small model reads three 128-token chunks badly: it quotes a plausible sentence from the wrong
place. Extractive compression (as in RECOMP or a sentence-window retriever) hands it only the
``n`` best sentences instead, each still inside its chunk's numbered document so that [n]
citations keep pointing at whole chunks with exact provenance. A sentence is scored by

    cosine(question, sentence)                        (the knowledge base's embedder)
  + lexical * IDF-weighted share of the question's content words it contains
  - type_penalty if the question asks for an amount, number, date or person and the sentence has none

Table rows are scored with their header row, which travels with them into the prompt. The
documents come in the order of their best sentence, and the sentences inside a document best first,
so the likeliest answer is read first. On the demo eval (55 answerable questions, three chunks
each) the answer is in the top 1/2/4/6 sentences for 60/67/80/82% of questions; the whole chunks
hold it for 93%. A model trained on such prompts learns the order: best-first sentences, instead of
document order, lifted the retrained ``demo`` adapter's hybrid correctness from 0.52 to 0.62 on
that eval, and RAG-only from 0.41 to 0.45. That trade suits a 135M model, not a 7B one:
``focus_sentences: 0`` turns focus off.

The answer-type cue reads English question words (how much, how many, when, who); other languages
get the cosine and lexical terms only.

``unknown_terms`` is the other half of reading: a question about something the knowledge base never
mentions ("the cooperative's mascot", "the fax number") cannot be answered from it, however close
the retrieved chunks are. A small model answers such questions anyway, from the nearest sentence.
A content word of the question is unknown when no chunk of the knowledge base contains it (FTS5,
porter-stemmed, and any word its stem begins: "depart" finds "departure") and no word of the
retrieved chunks is close to it (embedder cosine below ``similarity``: "tallest" finds "height" at
0.70, "ran" finds "running" at 0.78). Single words embed coarsely, so a synonym can fall short: with
all-MiniLM-L6-v2, "depart" is 0.36 from "leaves", and a question saying "depart" to a knowledge
base that only says "leave" is answered "I don't know", naming the word so the user can rephrase.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np

from retrieval.records import Chunk
from retrieval.search import STOPWORDS

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
TABLE_RULE = re.compile(r"^[\s|:+-]+$")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DIGIT = re.compile(r"\d")
_NUMBER_WORD = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                          r"forty|fifty|hundred|thousand|million|half|quarter)\b", re.I)
_NAME = re.compile(r"\b[A-Z][a-z]+(?:[ -](?:of |de |van |von )?[A-Z][a-z]+)+\b")
_ASKS_AMOUNT = re.compile(r"\bhow much\b|\bcost|\bprice|\bfees?\b|\bcharges?\b|\bbudget\b|\bfare\b", re.I)
_ASKS_NUMBER = re.compile(r"\bhow (?:many|long|far|often|quickly|soon|old|big|tall|high|fast|heavy|deep|wide)\b|"
                          r"\bwhat (?:share|percentage|proportion|number|speed|time|date|year)\b|"
                          r"\b(?:which|what) (?:number|year|date|form|code)\b|\bwhen\b|\bwhat age\b", re.I)
_ASKS_PERSON = re.compile(r"^\s*who\b", re.I)
_STOP = STOPWORDS | {"must", "get", "per"}  # the BM25 query stopwords, and a few question fillers
# Words that shape a question or name the type of its answer rather than its topic ("what number",
# "how much does it cost"): never taken as unknown terms, even where no document uses them.
_QUESTION_WORDS = frozenset(
    "many much long far often soon old big tall high fast ever also else kind sort type way name called "
    "please tell know need want like number date time year day cost price amount place person people "
    "each every any some other only just still more most less least before after between during about over "
    "under above below again within without through across both either neither such same own very".split())


@dataclasses.dataclass(frozen=True)
class FocusSettings:
    """How sentences are chosen (see the module docstring)."""

    sentences: int = 4
    lexical: float = 0.6
    type_penalty: float = 0.3


def split_sentences(text: str) -> list[str]:
    """Sentences and list items of ``text``, bullets stripped, whitespace squeezed."""
    out = []
    for part in SENTENCE_END.split(text):
        part = " ".join(BULLET.sub("", part).split())
        if part:
            out.append(part)
    return out


def text_units(text: str) -> list[tuple[str, str]]:
    """(prefix, sentence) units of a chunk: sentences, and table rows whose prefix is their header row."""
    units: list[tuple[str, str]] = []
    header: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if "|" in stripped and len(stripped.strip("|").split("|")) >= 2:
            if TABLE_RULE.match(stripped):
                continue
            if header is None:
                header = stripped
                units.append(("", stripped))
            else:
                units.append((header, stripped))
            continue
        header = None
        units.extend(("", s) for s in split_sentences(line))
    return units


def content_stems(text: str) -> set[str]:
    """Lower-cased content words of ``text``, cut to five letters (a crude stem: dog/dogs, sail/sailing)."""
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP}


def _asked_type(question: str) -> str | None:
    if _ASKS_AMOUNT.search(question):
        return "number"  # an amount is written with digits ("€2.50", "2,50 euros")
    if _ASKS_NUMBER.search(question):
        return "number"
    if _ASKS_PERSON.search(question):
        return "name"
    return None


def _has_type(text: str, kind: str | None) -> bool:
    if kind == "number":
        return bool(_DIGIT.search(text) or _NUMBER_WORD.search(text))
    if kind == "name":
        return bool(_NAME.search(text))
    return True


def focus_chunks(question: str, chunks: Sequence[Chunk], embedder, document_frequency=None,
                 settings: FocusSettings = FocusSettings()) -> list[tuple[int, Chunk]]:
    """The ``settings.sentences`` best sentences of ``chunks`` for ``question``, as (n, chunk) pairs.

    n is the chunk's 1-based position in ``chunks`` (its citation number); each chunk's text is cut
    down to its chosen sentences (table rows with their header). Pairs come best document first;
    chunks with no chosen sentence are left out. ``embedder`` has ``embed_query`` and
    ``embed_documents`` (normalized vectors); ``document_frequency(words) -> (n_docs, {word: df})``
    weights rare question words up (without it every word weighs the same).
    """
    chunks = list(chunks)
    if settings.sentences <= 0 or not chunks:
        return list(enumerate(chunks, start=1))
    units = [(n, prefix, sentence) for n, chunk in enumerate(chunks, start=1)
             for prefix, sentence in text_units(chunk.text)]
    if len(units) <= settings.sentences:
        return list(enumerate(chunks, start=1))
    query_words = content_stems(question)
    weights = _idf(question, query_words, document_frequency)
    total = sum(weights.values()) or 1.0
    vectors = embedder.embed_documents([f"{p}\n{s}" if p else s for _, p, s in units])
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(embedder.embed_query(question), dtype=np.float32)
    asked = _asked_type(question)
    for i, (_, prefix, sentence) in enumerate(units):
        shared = query_words & content_stems(f"{prefix} {sentence}")
        scores[i] += settings.lexical * sum(weights.get(w, 0.0) for w in shared) / total
        if not _has_type(sentence, asked):
            scores[i] -= settings.type_penalty
    chosen = np.argsort(-scores, kind="stable")[: settings.sentences].tolist()  # best first
    best: dict[int, float] = {}
    picked: dict[int, list[int]] = {}
    for i in chosen:
        n = units[i][0]
        picked.setdefault(n, []).append(i)
        best[n] = max(best.get(n, -math.inf), float(scores[i]))
    out = []
    for n in sorted(picked, key=lambda m: -best[m]):
        lines: list[str] = []
        for i in picked[n]:
            _, prefix, sentence = units[i]
            if prefix and prefix not in lines:
                lines.append(prefix)
            lines.append(sentence)
        out.append((n, dataclasses.replace(chunks[n - 1], text="\n".join(lines))))
    return out


def _idf(question: str, stems: set[str], document_frequency) -> dict[str, float]:
    if document_frequency is None or not stems:
        return {w: 1.0 for w in stems}
    words = {w for w in _WORD.findall(question.lower()) if w not in _STOP}
    n_docs, df = document_frequency(sorted(words))
    weights: dict[str, float] = {}
    for word in words:
        idf = math.log((n_docs + 1) / (df.get(word, 0) + 0.5))
        weights[word[:5]] = max(weights.get(word[:5], 0.0), max(idf, 0.1))
    return weights


def unknown_terms(question: str, chunks: Sequence[Chunk], embedder, document_frequency,
                  similarity: float = 0.45) -> list[str]:
    """Content words of ``question`` that the knowledge base never contains and ``chunks`` nothing close to.

    ``document_frequency(words) -> (n_chunks, {word: df})`` counts the knowledge base's chunks that
    hold each word; ``embedder`` compares each absent word with the words of ``chunks``. An empty
    list means every word of the question is known. Numbers and words under three letters are skipped.
    """
    words = [w for w in dict.fromkeys(_WORD.findall(question.lower()))
             if len(w) >= 3 and not w.isdigit() and w not in _STOP and w not in _QUESTION_WORDS]
    if not words:
        return []
    _, df = document_frequency(words)
    absent = [w for w in words if df.get(w, 1) == 0]
    if not absent:
        return []
    context = sorted({w for c in chunks for w in _WORD.findall(c.text.lower())
                      if len(w) >= 3 and not w.isdigit() and w not in _STOP})
    if not context:
        return absent
    closeness = (np.asarray(embedder.embed_documents(absent), dtype=np.float32)
                 @ np.asarray(embedder.embed_documents(context), dtype=np.float32).T).max(axis=1)
    return [w for w, best in zip(absent, closeness) if best < similarity]
