"""Context focus: the few sentences of the retrieved chunks that answer the question.

A small model reads three 128-token chunks badly: it quotes a plausible sentence from the wrong
place. Extractive compression (as in RECOMP or a sentence-window retriever) hands it only the
``n`` best sentences instead, each still inside its chunk's numbered document so that [n]
citations keep pointing at whole chunks with exact provenance. A sentence is scored by

    cosine(question, context + sentence)              (the knowledge base's embedder)
  + lexical * IDF-weighted share of the question's topic words it contains (with its context)
  - type_penalty if the question asks for an amount, number, date or name and the sentence holds
    none that the question does not already say ("Saltreach" answers no question about Saltreach);
    half of it if the sentence holds a number of another shape than the one asked for (a date where
    "how many" asks for a count, a count of rooms where "how long" asks for a period)

A sentence is read whole: lines wrapped inside a paragraph (Markdown and PDF text) are joined
before sentences are split. Its context is what it needs to be understood alone: the heading above
it ("MV Kestrel Vane" for "She was built in 2019 by Ferrand Marine"), the FAQ question it answers,
and for a table row the header row; the context is scored with the sentence and travels with it
into the prompt. The documents come in the order of their best sentence, and the sentences inside
a document best first, so the likeliest answer is read first. On the demo eval (55 answerable
questions, three chunks each) the answer is in the top 1/2/4 sentences for 75/87/91% of questions
(73/80/91% with one "number" shape, 60/67/80% when wrapped lines were split and headings scored as
sentences); the whole chunks hold it for 93%. That trade suits a 135M model, not a 7B one:
``focus_sentences: 0`` turns focus off.

The answer-type cue reads English question words (how much, how many, when, who); other languages
get the cosine and lexical terms only. The same cue checks an answer (``answers_shape``): a "who"
question wants a name the question does not say and the knowledge base does not repeat everywhere
(``new_names``: "Saltreach" answers no question about a Saltreach ship's builder, "Hesketh Yard" does).

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
# Markdown's inline marks, which a model reading or quoting a sentence should not have to copy:
# **bold**, __bold__, *emphasis*, `code`, and a link or image, which keeps its label
_MARKS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1|(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])"
                    r"|`([^`\n]+)`|!?\[([^\]\n]*)\]\([^)\s]*\)")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NUMBER_WORD = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                          r"forty|fifty|hundred|thousand|million|half|quarter)\b", re.I)
_NUMBER = re.compile(r"\d+|" + _NUMBER_WORD.pattern, re.I)
_QUANTITY = r"(?:\d[\d,]*(?:\.\d+)?|" + _NUMBER_WORD.pattern + r")"
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|march|apr(?:il)?|(?-i:May)|june?|july?|aug(?:ust)?|sept?(?:ember)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
# The shapes of the answers that numeric questions ask for (the NUM subclasses of Li and Roth's
# question taxonomy). A number of another shape is a weaker answer than one of the asked shape, and
# a stronger one than no number at all: "founded on 14 March 1987" does not say how many founded it.
_SHAPES = {
    # whole amounts: "€95" is money to its last digit, so no "5" is left over to count as a count; "free"
    # is a price, "car-free" and "free-standing" are not
    "money": re.compile(r"[€£$¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand|bn|m|k)\b)?|"
                       r"\d[\d,]*(?:\.\d+)?\s?(?:euros?|eur|pounds?|gbp|dollars?|usd|pence|cents?)\b|(?<![\w-])free\b(?!-)",
                       re.I),
    "percent": re.compile(r"\d[\d,]*(?:\.\d+)?\s?%|\d[\d,]*(?:\.\d+)?\s?per ?cent\b|\bper ?cent\b", re.I),
    "clock": re.compile(r"\b\d{1,2}[:.]\d\d\b|\b\d{1,2}\s?(?:am|pm)\b|\bnoon\b|\bmidnight\b", re.I),
    "date": re.compile(rf"\b(?:{_DAY}\s+)?{_MONTH}\b(?:\s+{_DAY}\b)?(?:,?\s+(?:1[5-9]|20)\d\d\b)?|"
                       r"\b(?:1[5-9]|20)\d\d\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b|"
                       r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)days?\b", re.I),
    "period": re.compile(_QUANTITY + r"[\s-]*(?:working |calendar |full |clear )?(?:seconds?|minutes?|mins?|hours?|"
                         r"hrs?|days?|nights?|weeks?|months?|years?|decades?)\b", re.I),
    "measure": re.compile(_QUANTITY + r"\s?(?:metres?|meters?|m|km|kilometres?|miles?|nautical miles?|knots?|kn|"
                          r"tonnes?|tons?|t|kg|kilos?|kilograms?|grams?|g|feet|foot|ft|inches|cm|mm|litres?|"
                          r"liters?|l|mph|km/h|kph|degrees?|°[cf]?|passengers|people|seats|cars|vehicles)\b", re.I),
    # an identifier: a form or route code (DG-3, IC-2, R6, TC-ISL), a number of five digits or more, a phone number
    "code": re.compile(r"\b[A-Za-z]{1,4}-?\d+[A-Za-z]?\b|\b[A-Z]{2,5}-[A-Z0-9]{2,5}\b|\b\d{5,}\b|"
                       r"\b\d{3,5}(?: \d{3,4}){1,3}\b"),
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
}
# what each kind of question accepts; "count" is any number that is not a date, time, sum or code
_ASKED_SHAPES = [
    (re.compile(r"\be-?mail\b", re.I), ("email",)),
    (re.compile(r"\bhow much (?:time|longer)\b|\bhow (?:long|soon|quickly|often|early|late|old)\b|"
                r"\bhow far (?:ahead|in advance|before)\b", re.I), ("period", "clock", "date", "measure")),
    (re.compile(r"\bwhat (?:share|percentage|proportion|percent|fraction)\b|\bwhat rate\b", re.I), ("percent",)),
    # a reduction is a share of the fare as often as a sum: "40% off", "€5 off"
    (re.compile(r"\b(?:discount|reduction|rebate)s?\b|\btake off\b|\boff the (?:fare|price)\b", re.I),
     ("percent", "money")),
    # "who is in charge of safety" asks for a person, not a charge
    (re.compile(r"\bhow much\b|\bcost|\bprices?\b|\bfees?\b|(?<!\bin )\bcharges?\b|\bbudget\b|\bfares?\b|"
                r"\bpay\b|\bspend\b|\bbalance\b", re.I), ("money",)),
    (re.compile(r"\b(?:what|which) time\b", re.I), ("clock",)),
    # "when" asks for a date where it opens the question, not in "where is it measured when deciding"
    (re.compile(r"^\W*(?:and |so |since |until |till )?when\b|\b(?:what|which) (?:date|year|day|month)s?\b|"
                r"\bdeadline\b", re.I), ("date",)),
    (re.compile(r"\bhow many\b|\b(?:what|the) number of\b", re.I), ("count",)),
    (re.compile(r"\bhow (?:far|big|tall|high|fast|heavy|deep|wide|large|long)\b|"
                r"\bwhat (?:speed|height|length|weight|depth|width|size|distance|capacity)\b|"
                r"\b(?:top|maximum|minimum|max|min)\b|"
                r"\b(?:tall|high|long|larg|bigg|heavi|wid|deep|fast|small|short|low|cheap|dear)est\b", re.I),
     ("measure", "money", "percent")),
    # "what is the product code", "the Harbour Desk's WhatsApp number" (a number *of* things is a count, above)
    (re.compile(r"\b(?:which|what) (?:phone |telephone |reference |form |account )?(?:number|form|code|reference)\b|"
                r"\bcode\b|\b(?:phone|telephone|whatsapp|fax|mobile|contact|reference|account) number\b", re.I),
     ("code",)),
]
_NOT_COUNT = ("money", "percent", "clock", "date", "code", "email")
# "What is the tallest vehicle...": a measure of the dimension asked for ("4.6 metres"), not any
# measure ("7.5 tonnes")
_SHAPES.update({
    "length": re.compile(_QUANTITY + r"\s?(?:metres?|meters?|m|km|kilometres?|miles?|nautical miles?|feet|foot|ft|"
                         r"inches|cm|mm)\b", re.I),
    "mass": re.compile(_QUANTITY + r"\s?(?:tonnes?|tons?|t|kg|kilos?|kilograms?|grams?|g)\b", re.I),
    "speed": re.compile(_QUANTITY + r"\s?(?:knots?|kn|mph|km/h|kph)\b", re.I),
})
_DIMENSIONS = [
    (re.compile(r"\b(?:tall|high|long|wide|deep|far)(?:er|est)?\b|"
                r"\b(?:height|length|width|depth|distance|headroom)\b", re.I), "length"),
    (re.compile(r"\bheav(?:y|ier|iest)\b|\bweigh", re.I), "mass"),
    (re.compile(r"\bfast(?:er|est)?\b|\bspeeds?\b", re.I), "speed"),
]
# "How many passengers...": a count answers it when it counts passengers ("licensed for 312
# passengers", "Passengers carried 418,600"), not when it counts cars ("up to 38 cars")
_COUNTED = re.compile(r"\bhow many\s+([^\W\d_]+)", re.I)
_COUNT_WINDOW = 3  # words between a number and the noun it counts
# "Who pays the fee?" names whoever pays it, whatever words follow
_ASKS_PERSON = re.compile(r"^\W*(?:who|whom|whose)\b", re.I)
# a person, place or thing called by its name: "Who chairs...", "Where is...", "Which shipyard...",
# "What is the name of...", "What is it called?"
_ASKS_NAME = re.compile(r"^\s*(?:who|whom|whose|where|which)\b|\bname\b|\bcalled\b", re.I)
_CALENDAR = re.compile(_MONTH + r"|(?:mon|tues|wednes|thurs|fri|satur|sun)days?", re.I)
_STOP = STOPWORDS | {"must", "get", "per"}  # the BM25 query stopwords, and a few question fillers
# Words that shape a question or name the type of its answer rather than its topic ("what number",
# "how much does it cost"): never taken as unknown terms, even where no document uses them.
_QUESTION_WORDS = frozenset(
    "many much long far often soon old big tall high fast ever also else kind sort type way name called "
    "please tell know need want like number date time year day cost price amount place person people "
    "each every any some other only just still more most less least before after between during about over "
    "under above below again within without through across both either neither such same own very "
    "deadline discount reduction rebate".split())


@dataclasses.dataclass(frozen=True)
class FocusSettings:
    """How sentences are chosen (see the module docstring)."""

    sentences: int = 4
    lexical: float = 0.6
    type_penalty: float = 0.3
    strict: bool = False
    """Only sentences that hold an answer of the asked shape (``answers_shape``); none for a question
    that asks for no number."""


def split_sentences(text: str) -> list[str]:
    """Sentences and list items of ``text``: lines wrapped inside a paragraph are joined first,
    bullets stripped, whitespace squeezed; headings and table rows are kept as they are."""
    out = []
    for kind, block in text_blocks(text):
        out.extend(_sentences(block) if kind == "text" else [block])
    return out


def _sentences(paragraph: str) -> list[str]:
    return [part for part in (" ".join(p.split()) for p in SENTENCE_END.split(paragraph)) if part]


def _is_row(line: str) -> bool:
    return "|" in line and len(line.strip().strip("|").split("|")) >= 2


def _is_heading(line: str, following: str, stands_alone: bool) -> bool:
    """A Markdown heading; a short title without final punctuation on a line of its own (a blank
    line, a list or a table after it: "MV Kestrel Vane", "Getting a card"); or a question that an
    FAQ answers below it."""
    if line.startswith("#"):
        return True
    words = len(line.split())
    if line.endswith("?"):
        return words <= 15 and bool(following) and not following.startswith("#")
    if line.endswith((".", "!", ",", ";", ":")) or words > 10 or len(line) > 70:
        return False
    return stands_alone or bool(BULLET.match(following)) or _is_row(following)


def plain(line: str) -> str:
    """``line`` without Markdown's inline marks: "**48 hours or more:** a full refund" reads
    "48 hours or more: a full refund"; a link keeps its label."""
    return _MARKS.sub(lambda m: next(g for g in m.groups()[1:] if g is not None), line)


def text_blocks(text: str) -> list[tuple[str, str]]:
    """``text`` as (kind, text) blocks: "heading", "row" (a table row) or "text" (a paragraph or list
    item, its wrapped lines joined with spaces, bullet stripped), without Markdown's inline marks."""
    lines = [plain(line.strip()) for line in text.splitlines()]
    blocks: list[tuple[str, str]] = []
    paragraph: list[str] = []

    def flush():
        if paragraph:
            blocks.append(("text", " ".join(paragraph)))
            paragraph.clear()

    for i, line in enumerate(lines):
        following = next((later for later in lines[i + 1:] if later), "")
        stands_alone = i + 1 == len(lines) or not lines[i + 1]
        # a heading starts a block; inside a paragraph only after a sentence has ended
        may_head = not paragraph or paragraph[-1].endswith((".", "!", "?", ":"))
        if not line:
            flush()
        elif _is_row(line):
            flush()
            if not TABLE_RULE.match(line):
                blocks.append(("row", line))
        elif BULLET.match(line):
            flush()
            paragraph.append(BULLET.sub("", line))
        elif may_head and _is_heading(line, following, stands_alone):
            flush()
            blocks.append(("heading", line))
        else:
            paragraph.append(line)
    flush()
    return blocks


def text_units(text: str) -> list[tuple[str, str]]:
    """(prefix, sentence) units of a chunk: its sentences and table rows. The prefix is the context a
    unit needs to be understood alone: the heading above it and, for a table row, the header row."""
    units: list[tuple[str, str]] = []
    heading = ""
    header: str | None = None
    for kind, block in text_blocks(text):
        if kind == "heading":
            heading, header = block, None
        elif kind == "row":
            if header is None:
                header = block
                units.append((heading, block))
            else:
                units.append(("\n".join(p for p in (heading, header) if p), block))
        else:
            header = None
            units.extend((heading, s) for s in _sentences(block))
    return units


def content_stems(text: str) -> set[str]:
    """Lower-cased content words of ``text``, cut to five letters (a crude stem: dog/dogs, sail/sailing)."""
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP}


def _topic_stems(question: str) -> set[str]:
    """The question's content stems without the words that only shape it ("how many", "name")."""
    return {w[:5] for w in _WORD.findall(question.lower()) if w not in _STOP and w not in _QUESTION_WORDS}


def _asked_type(question: str) -> tuple[str, ...] | str | None:
    """The answer shapes a numeric question accepts (("period", ...)), "name", or None (any sentence)."""
    if _ASKS_PERSON.match(question):
        return "name"
    for pattern, shapes in _ASKED_SHAPES:
        if pattern.search(question):
            return shapes
    if _ASKS_NAME.search(question):
        return "name"
    return None


def _type_match(text: str, kind, question: str = "") -> float:
    """How well ``text`` holds an answer of the asked kind that the question itself does not say:
    1 (it does, or nothing in particular was asked), 0.5 (a number of another shape: a date where a
    count was asked) or 0 (no number, no name). "Saltreach" answers no question about Saltreach."""
    if kind is None:
        return 1.0
    known = {w.lower() for w in _WORD.findall(question)}

    def new(found: str) -> bool:
        return any(w.lower() not in known for w in _NUMBER.findall(found)) or not _NUMBER.search(found)

    if kind == "name":  # any capitalised word will do here, a month included (``new_names`` is stricter)
        return float(bool(_capitalised_new(text, question)))
    for shape in kind:
        if shape == "count":
            rest = text
            for other in _NOT_COUNT:
                rest = _SHAPES[other].sub(" ", rest)
            if any(new(m.group(0)) for m in _NUMBER.finditer(rest)):
                return 1.0
        elif any(new(m.group(0)) for m in _SHAPES[shape].finditer(text)):
            return 1.0
    return 0.5 if any(new(m.group(0)) for m in _NUMBER.finditer(text)) else 0.0


def asked_shapes(question: str) -> tuple[str, ...] | None:
    """The answer shapes a question accepts ("how long": period, clock, date, measure; "who": a name),
    else None (any sentence may answer it)."""
    kind = _asked_type(question)
    return ("name",) if kind == "name" else kind


def _capitalised_new(text: str, question: str) -> list[str]:
    """The capitalised words of ``text`` past its first (a sentence's first word is capitalised
    anyway; a table cell's is not) that are neither stopwords nor words of ``question``."""
    known = {w.lower() for w in _WORD.findall(question)}
    words = _WORD.findall(text)
    start = 0 if "|" in text else 1
    return [w for w in words[start:] if w[:1].isupper() and w.lower() not in known and w.lower() not in _STOP]


def new_names(text: str, question: str, document_frequency=None) -> list[str]:
    """The names ``text`` says that ``question`` does not: capitalised words past its first, not
    months or weekdays, and (given ``document_frequency``, as for ``focus_chunks``) not common in
    the knowledge base. A name that a KB repeats in more than one chunk in twenty (and at least
    four) is its setting, not an answer: "The Saltreach Ferry Cooperative is owned by its members"
    names nobody for "who built her", where "Hesketh Yard" (one chunk) does."""
    text = re.sub(r"\[\d+(?:,\s*\d+)*\]", " ", text)
    names = [w for w in _capitalised_new(text, question) if not _CALENDAR.fullmatch(w)]
    if not names or document_frequency is None:
        return names
    n_chunks, df = document_frequency(sorted({w.lower() for w in names}))
    common = max(3, n_chunks / 20)
    return [w for w in names if df.get(w.lower(), 0) <= common]


def counted_noun(question: str) -> str | None:
    """The stem of what a "how many" question counts ("passe" for "How many passengers can she
    carry?"), or None ("how many of them", "how many people": no noun a document would repeat)."""
    match = _COUNTED.search(question)
    if not match:
        return None
    word = match.group(1).lower()
    return None if word in _STOP or word in _QUESTION_WORDS or len(word) < 3 else word[:5]


def _count_words(text: str) -> list[str]:
    """The words of ``text`` with its sums, percentages, times, dates and codes blanked out."""
    for other in _NOT_COUNT:
        text = _SHAPES[other].sub(" ", text)
    return [w.lower() for w in _WORD.findall(text)]


def counted_numbers(text: str, question: str) -> set[str]:
    """The numbers of ``text`` (digit runs and number words) within three words of the noun that a
    "how many" ``question`` counts and that the question does not already say; empty for a
    question that counts no noun."""
    stem = counted_noun(question)
    if stem is None:
        return set()
    known = {w.lower() for w in _WORD.findall(question)}
    words = _count_words(text)
    found = set()
    for i, word in enumerate(words):
        if word not in known and _NUMBER.fullmatch(word):
            near = words[max(0, i - _COUNT_WINDOW):i] + words[i + 1:i + 1 + _COUNT_WINDOW]
            if any(w.startswith(stem) for w in near):
                found.add(word)
    return found


def answers_shape(text: str, question: str, evidence: str = "", document_frequency=None) -> bool:
    """Whether ``text`` (an answer or a sentence, its [n] citations ignored) holds a number of the shape
    ``question`` asks for that the question does not already say; True for a question that asks for
    no number. "The crossing takes 2 hours" does not answer "how much does it cost".

    A "how many NOUN" question wants a number that counts the noun: one next to it in ``text``, or
    one that ``evidence`` (the documents shown, or a sentence's heading and itself) puts next to it:
    "312" answers "how many passengers" where a document says "licensed for 312 passengers". A
    question that names a dimension wants a measure in its units: "7.5 tonnes" is no height. A
    question asking for a name wants one the question does not say and the knowledge base does not
    repeat everywhere (``new_names``, with ``document_frequency`` as for ``focus_chunks``)."""
    shapes = asked_shapes(question)
    if shapes is None:
        return True
    if shapes == ("name",):
        return bool(new_names(text, question, document_frequency))
    text = re.sub(r"\[\d+(?:,\s*\d+)*\]", " ", text)
    if shapes == ("count",) and counted_noun(question):
        if counted_numbers(text, question):
            return True
        return bool(evidence) and bool(set(_count_words(text)) & counted_numbers(evidence, question))
    if "measure" in shapes and "period" not in shapes:
        for asks, dimension in _DIMENSIONS:
            if asks.search(question):
                return _type_match(text, (dimension,), question) == 1.0
    if shapes == ("date",):  # "when does it leave?": a time of day answers it too
        shapes = ("date", "clock")
    return _type_match(text, shapes, question) == 1.0


def shaped_spans(text: str, question: str) -> list[str]:
    """The numbers of ``text`` in the shape ``question`` asks for that the question does not already
    say ("312" of "licensed for 312 passengers and up to 38 cars" for "how many passengers";
    "94.3%" for "what share"); empty for a question that asks for no number."""
    shapes = asked_shapes(question)
    if shapes is None or shapes == ("name",):
        return []
    text = re.sub(r"\[\d+(?:,\s*\d+)*\]", " ", text)
    known = {w.lower() for w in _WORD.findall(question)}

    def new(found: str) -> bool:  # "TC-ISL", "free", an address: new where the question does not say it
        if not _NUMBER.search(found):
            return found.lower() not in question.lower()
        return any(w.lower() not in known for w in _NUMBER.findall(found))

    if shapes == ("count",) and counted_noun(question):
        counted = sorted(counted_numbers(text, question))
        if counted:
            return counted
    if "measure" in shapes and "period" not in shapes:
        shapes = next(((dimension,) for asks, dimension in _DIMENSIONS if asks.search(question)), shapes)
    if shapes == ("date",):
        shapes = ("date", "clock")
    spans: list[str] = []
    for shape in shapes:
        if shape == "count":
            rest = text
            for other in _NOT_COUNT:
                rest = _SHAPES[other].sub(" ", rest)
            spans += [m.group(0) for m in _NUMBER.finditer(rest)]
        else:
            spans += [m.group(0) for m in _SHAPES[shape].finditer(text)]
    return [span for span in spans if new(span)]


def _holds_shape(prefix: str, sentence: str, question: str, document_frequency=None) -> bool:
    """Whether a sentence, read with its heading or table header, answers the asked shape: a row
    under a header that names the counted noun ("| Ship | Passengers |") counts it with any count."""
    if answers_shape(sentence, question, evidence=f"{prefix}\n{sentence}", document_frequency=document_frequency):
        return True
    stem = counted_noun(question)
    return bool(stem and "|" in prefix and any(w.startswith(stem) for w in _count_words(prefix))
                and _type_match(sentence, ("count",), question) == 1.0)


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
    if settings.strict:
        if asked_shapes(question) is None:
            return []
        units = [u for u in units if _holds_shape(u[1], u[2], question, document_frequency)]
        if not units:
            return []
    elif len(units) <= settings.sentences:
        return list(enumerate(chunks, start=1))
    query_words = _topic_stems(question)
    weights = _idf(question, query_words, document_frequency)
    total = sum(weights.values()) or 1.0
    vectors = embedder.embed_documents([f"{p}\n{s}" if p else s for _, p, s in units])
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(embedder.embed_query(question), dtype=np.float32)
    asked = _asked_type(question)
    for i, (_, prefix, sentence) in enumerate(units):
        shared = query_words & content_stems(f"{prefix} {sentence}")
        scores[i] += settings.lexical * sum(weights.get(w, 0.0) for w in shared) / total
        scores[i] -= settings.type_penalty * (1.0 - _type_match(sentence, asked, question))
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
            for line in prefix.splitlines():  # a heading or header row shared by two sentences comes once
                if line not in lines:
                    lines.append(line)
            lines.append(sentence)
        out.append((n, dataclasses.replace(chunks[n - 1], text="\n".join(lines))))
    return out


def _idf(question: str, stems: set[str], document_frequency) -> dict[str, float]:
    if document_frequency is None or not stems:
        return {w: 1.0 for w in stems}
    words = {w for w in _WORD.findall(question.lower()) if w[:5] in stems}
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
    The noun a "how many" question counts is unknown when absent from the KB and ``chunks``, however
    close a word of them is: "sailing" is close to "lifeboats", but a number of sailings is no count
    of lifeboats.
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
    stem = counted_noun(question)
    counted = stem is not None and not any(c.startswith(stem) for c in context)
    return [w for w, best in zip(absent, closeness) if best < similarity or (counted and w.startswith(stem))]
