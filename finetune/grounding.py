"""RAFT-style grounding data from any knowledge base, with no external model.

Each example is the exact inference prompt (``retrieval.citations.grounded_messages``) over k
numbered documents and the answer a grounded model should give:

- a question made from one sentence of an *oracle* chunk: the sentence's salient span (a date,
  an amount, a number, a name, a code) becomes a wh-phrase ("Who leads the Oslo office?",
  "The office opened in what year?") or a blank ("Fill in the blank: ..."); the answer quotes
  the sentence and cites the oracle as [n];
- the oracle placed at a random position among the chunks the KB's own search returns for the
  question (hard distractors, none containing the answer span);
- for a share of examples (``abstain_share``) no oracle at all, and the answer is ``NO_ANSWER``.

The adapter trained on this learns to find the fact in the context and cite it, and to refuse
when it is absent: skills that transfer to knowledge bases it has never seen. Questions that repeat
an evaluation question are always left out. By default so are the sentences that hold an
evaluation answer, so the adapter never reads the facts an evaluation asks about and the evaluation
scores reading skill alone; ``hold_out_answers=False`` keeps them, as for an adapter trained on
the documents its users will ask about (RAFT's setting: the model has studied the documents, not
the questions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from finetune.errors import DatasetError
from retrieval.citations import NO_ANSWER, grounded_messages
from retrieval.focus import TABLE_RULE, plain, split_sentences
from retrieval.records import Chunk

log = logging.getLogger(__name__)

_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
           "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_UNIT = r"[a-z][a-z-]{2,}"
# (kind, pattern, wh-phrase). The first pattern that matches a sentence wins, in this order.
SPAN_PATTERNS: list[tuple[str, re.Pattern, str]] = [
    ("date", re.compile(rf"\b(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\.?(?:,?\s+\d{{4}})?|(?:{_MONTHS})\.?\s+"
                        rf"\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|(?:{_MONTHS})\s+\d{{4}}|\d{{4}}-\d{{2}}-\d{{2}})\b"),
     "what date"),
    ("money", re.compile(r"(?:[$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand|[kKmM]))?\b|"
                         r"\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|NOK|SEK|DKK|dollars|euros|pounds|kroner)\b)"),
     "how much"),
    ("percent", re.compile(r"\b\d+(?:\.\d+)?\s?(?:%|percent\b|per cent\b)"), "what percentage"),
    ("time", re.compile(r"\b\d{1,2}[:.]\d{2}\s?(?:[ap]\.?m\.?)?(?=\W|$)|\b\d{1,2}\s?[ap]\.?m\.?(?=\W|$)", re.I),
     "what time"),
    ("code", re.compile(r"\b[A-Z]{2,}[-_]?\d[\w-]*\b|\b[A-Z]+-[A-Z0-9]+\b"), "what code"),
    ("quantity", re.compile(rf"\b(?!(?:19|20)\d\d\b)\d[\d,]*(?:\.\d+)?(?=\s+{_UNIT}\b)"), "how many"),
    ("year", re.compile(r"\b(?:19|20)\d{2}\b"), "what year"),
    ("name", re.compile(r"\b[A-Z][a-z]+(?:[ -](?:of |de |van |von |and )?[A-Z][a-z]+)+\b"), "who or what"),
    ("number", re.compile(r"\b\d[\d,]*(?:\.\d+)?\b"), "what number"),
]


@dataclass(frozen=True)
class GroundingSettings:
    """How ``build_grounding_set`` makes its examples."""

    n_examples: int = 400
    k: int = 4  # documents per prompt: the oracle plus k-1 distractors (k distractors when abstaining)
    k_min: int | None = None  # if set, each example has between k_min and k documents (robust to any k)
    abstain_share: float = 0.2  # share of examples without the oracle, answered with NO_ANSWER
    cloze_share: float = 0.15  # share of examples asked as "Fill in the blank: ..."
    keyword_share: float = 0.45  # share asked with a few of the sentence's words ("When Oslo office opened?"):
    # questions that only partly overlap their sentence, as real questions do, so the adapter
    # answers paraphrases instead of abstaining whenever the wording differs
    min_words: int = 6  # sentences shorter or longer than this are not used as facts
    max_words: int = 45
    retrieval_mode: str = "bm25"  # how distractors are found (the KB's own search; bm25 needs no embedding)
    source_prefix: str | None = None  # only chunks (oracles and distractors) of documents under this path
    answer_template: str = "{answer}"  # wraps answers in a house voice, e.g. "Hello! {answer}\n- The Desk"
    focus_sentences: int = 2  # prompts carry only the best sentences (0 = whole chunks): as many as the
    # assistant shows (generation.focus_sentences), so training sees the prompts it will answer
    hold_out_answers: bool = True  # leave out the sentences that hold an answer of ``exclude``, besides
    # the questions that repeat its questions (False: only those questions stay out)
    seed: int = 0

    def __post_init__(self):
        if self.n_examples < 1:
            raise ValueError("n_examples must be at least 1")
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if self.k_min is not None and not 1 <= self.k_min <= self.k:
            raise ValueError("k_min must be between 1 and k")
        if not 0 <= self.abstain_share <= 1 or not 0 <= self.cloze_share <= 1 or not 0 <= self.keyword_share <= 1:
            raise ValueError("abstain_share, cloze_share and keyword_share must be between 0 and 1")
        if self.cloze_share + self.keyword_share > 1:
            raise ValueError("cloze_share + keyword_share must be at most 1")
        if "{answer}" not in self.answer_template:
            raise ValueError("answer_template must contain {answer}")


@dataclass(frozen=True)
class Fact:
    """A sentence of a chunk and the span a question asks for."""

    chunk: Chunk
    sentence: str
    span: str
    kind: str
    span_start: int  # offset of the span inside the sentence
    label: str = ""  # for "Label: value" lines, the label ("Catering Manager")


@dataclass(frozen=True)
class GroundingExample:
    """One training conversation and where its answer came from."""

    messages: list[dict]
    question: str
    answer: str
    kind: str  # "question", "cloze" or "abstain"
    span: str
    oracle_chunk_id: str | None
    oracle_position: int | None  # the n of the [n] the answer cites; None when abstaining
    context_chunk_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``{"messages": [...], "meta": {...}}``: chat-messages format plus provenance."""
        meta = asdict(self)
        meta.pop("messages")
        return {"messages": self.messages, "meta": meta}


def build_grounding_set(kb, n_examples: int | None = None, *, settings: GroundingSettings | None = None,
                        exclude: Iterable = (), progress: bool = False, **overrides) -> list[GroundingExample]:
    """Build ``n_examples`` grounded QA conversations from ``kb``'s chunks (see the module docstring).

    kb: anything with ``iter_chunks()`` and ``search(query, k, mode)`` (a ``KnowledgeBase``).
    exclude: evaluation questions to keep out: ``QAItem``s, dicts with ``question``/``answers``,
    or plain strings (each an answer or a question); with ``hold_out_answers`` (the default) the
    sentences that hold their answers stay out too.
    overrides: fields of ``GroundingSettings`` (``k``, ``abstain_share``, ``seed``...).
    """
    base = settings or GroundingSettings()
    if n_examples is not None:
        overrides["n_examples"] = n_examples
    settings = GroundingSettings(**{**asdict(base), **overrides})
    rng = random.Random(settings.seed)
    chunks = [c for c in kb.iter_chunks() if not settings.source_prefix or c.source.startswith(settings.source_prefix)]
    if not chunks:
        where = f" under {settings.source_prefix}" if settings.source_prefix else ""
        raise DatasetError(f"the knowledge base has no documents{where}: it is empty; "
                           "ingest documents first (ragtune ingest PATH --kb NAME)")
    guard = LeakageGuard(exclude)
    facts_by_chunk = [f for f in (extract_facts(c, settings) for c in chunks) if f]
    if settings.hold_out_answers:
        facts_by_chunk = [[f for f in facts if not guard.leaks(f.sentence)] for facts in facts_by_chunk]
    facts_by_chunk = [facts for facts in facts_by_chunk if facts]
    if not facts_by_chunk:
        raise DatasetError("no sentence in the knowledge base has a date, number, amount, code or name to ask about "
                           "(or all of them hold evaluation answers); add more documents")
    facts = _spread(facts_by_chunk, settings.n_examples, rng)
    n_abstain = round(settings.n_examples * settings.abstain_share)
    abstain = set(rng.sample(range(len(facts)), min(n_abstain, len(facts))))
    examples = []
    unfocused = 0
    for i, fact in enumerate(tqdm(facts, desc="grounding set", unit="ex", disable=not progress)):
        draw = rng.random()
        style = "cloze" if draw < settings.cloze_share else \
            "keywords" if draw < settings.cloze_share + settings.keyword_share else "question"
        question = {"cloze": cloze_question, "question": wh_question, "keywords": keyword_question}[style](fact)
        if guard.repeats(question):
            continue
        distractors = _distractors(kb, question, fact, settings, chunks, rng)
        k = rng.randint(settings.k_min, settings.k) if settings.k_min else settings.k
        if i in abstain:
            context = distractors[:k]
            answer, position, kind = NO_ANSWER, None, "abstain"
        else:
            context = distractors[: k - 1]
            position = rng.randint(0, len(context))
            context.insert(position, fact.chunk)
            position += 1
            answer = settings.answer_template.replace("{answer}", quote_answer(fact, position))
            kind = style
        documents = context
        if settings.focus_sentences and hasattr(kb, "focus"):
            documents = kb.focus(question, context, settings.focus_sentences)
            if position and not any(n == position and fact.span in c.text for n, c in documents):
                unfocused += 1  # the focus missed the answer: this prompt would teach guessing
                continue
        messages = grounded_messages(question, documents) + [{"role": "assistant", "content": answer}]
        examples.append(GroundingExample(messages, question, answer, kind, fact.span,
                                         fact.chunk.chunk_id if position else None, position,
                                         [c.chunk_id for c in context]))
    log.info("grounding set: %d examples (%d abstain) from %d chunks with facts; %d left out because the "
             "focus missed their answer", len(examples), sum(e.kind == "abstain" for e in examples),
             len(facts_by_chunk), unfocused)
    return examples


def retrieval_questions(kb, *, settings: GroundingSettings | None = None, exclude: Iterable = ()) -> list[tuple[str, str]]:
    """(question, chunk_id) pairs for tuning ``kb``'s retrieval: two questions (an echo question and a terse
    keyword question) for every fact of every chunk, but none about a sentence holding an ``exclude`` answer."""
    settings = settings or GroundingSettings()
    guard = LeakageGuard(exclude)
    pairs = []
    for chunk in kb.iter_chunks():
        if settings.source_prefix and not chunk.source.startswith(settings.source_prefix):
            continue
        for fact in extract_facts(chunk, settings):
            if not guard.leaks(fact.sentence):
                pairs += [(wh_question(fact), chunk.chunk_id), (keyword_question(fact), chunk.chunk_id)]
    return pairs


def check_questions(kb, n: int, *, settings: GroundingSettings | None = None, exclude: Iterable = ()) -> list[dict]:
    """``n`` questions with known answers, one per fact spread over ``kb``'s chunks, for a self-check.

    Each is ``{"id", "question", "answers", "sources"}`` (the QA file's fields). Passing them as
    ``exclude`` to ``build_grounding_set`` keeps the questions and the sentences that answer them out
    of training, so an adapter can be checked on the KB's own facts without having read them.
    A fact whose answer occurs in several chunks is not used: its question would have no single source.
    """
    settings = settings or GroundingSettings()
    rng = random.Random(settings.seed + 7919)  # not the grounding set's draw
    chunks = [c for c in kb.iter_chunks() if not settings.source_prefix or c.source.startswith(settings.source_prefix)]
    guard = LeakageGuard(exclude)
    spans: dict[str, int] = {}
    facts_by_chunk = [extract_facts(c, settings) for c in chunks]
    for facts in facts_by_chunk:
        for span in {_norm(f.span) for f in facts}:
            spans[span] = spans.get(span, 0) + 1
    usable = [[f for f in facts if spans[_norm(f.span)] == 1 and len(_norm(f.span)) >= 2 and not guard.leaks(f.sentence)]
              for facts in facts_by_chunk]
    usable = [facts for facts in usable if facts]
    if not usable:
        return []
    picked = _spread(usable, min(n, sum(len(f) for f in usable)), rng)
    questions = []
    for i, fact in enumerate(dict.fromkeys(picked)):
        questions.append({"id": f"check{i + 1:03d}", "question": wh_question(fact), "answers": [fact.span],
                          "sources": [fact.chunk.source]})
    return questions


def write_grounding_set(examples: Sequence[GroundingExample], path: str | Path, meta: bool = False) -> Path:
    """Write examples as chat-messages JSONL (``{"messages": [...]}`` per line; with ``meta``, provenance too)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            row = ex.to_dict() if meta else {"messages": ex.messages}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# --- facts and questions -------------------------------------------------------------------

_DETERMINER = re.compile(r"^(?:The|A|An|Our|Its|This|That|These|Those|Every|Each|All|Some|In|On|At|For|From|By) ")
_LABEL = re.compile(r"^([A-Z][A-Za-z&/' -]{2,40}):\s+(\S.*)$")


def find_span(sentence: str, start: int = 0, whole: bool = False) -> tuple[str, str, int] | None:
    """The sentence's most salient span (from offset ``start``) as (kind, text, offset), or None.

    whole: the span may be the entire text (a table cell); a sentence needs words around it."""
    for kind, pattern, _ in SPAN_PATTERNS:
        for match in pattern.finditer(sentence, start):
            span, offset = match.group(0).strip().rstrip(".,"), match.start()
            if kind == "name":
                while (m := _DETERMINER.match(span)) is not None:  # "The Little Orrin" -> "Little Orrin"
                    span, offset = span[m.end():], offset + m.end()
                if " " not in span and offset == 0:
                    continue
            if span and (whole or span.lower() != sentence.lower()):
                return kind, span, offset
    return None


def extract_facts(chunk: Chunk, settings: GroundingSettings = GroundingSettings()) -> list[Fact]:
    """Sentences of ``chunk`` that state something askable (a span), within the word limits."""
    facts = []
    for sentence in split_sentences(chunk.text):
        words = len(sentence.split())
        if not 3 <= words <= settings.max_words:
            continue
        label = _LABEL.match(sentence)
        if label and len(label.group(1).split()) <= 5:  # "Catering Manager: Lucia Fenwright, ..."
            found = find_span(sentence, label.start(2))
            if found:
                kind, span, start = found
                facts.append(Fact(chunk, sentence, span, kind, start, label=label.group(1).strip()))
            continue
        if words < settings.min_words or sentence[-1:] not in ".!?":
            continue
        found = find_span(sentence)
        if found:
            kind, span, start = found
            facts.append(Fact(chunk, sentence, span, kind, start))
    return facts + table_facts(chunk)


_NUMERIC = re.compile(r"[\d\s:.,€$£%/()-]+")


def _cells(line: str) -> list[str]:
    return [" ".join(plain(c).split()) for c in line.strip().strip("|").split("|")]


def table_facts(chunk: Chunk) -> list[Fact]:
    """Facts from table rows (Markdown pipes, or ``a | b`` lines as loaders flatten HTML/DOCX tables):
    the cell under column H in the row labelled R becomes "The H for R is CELL." with label "H for R"."""
    facts: list[Fact] = []
    block: list[list[str]] = []
    for line in chunk.text.splitlines() + [""]:
        if "|" in line and len(_cells(line)) >= 2:
            if not TABLE_RULE.match(line):
                block.append(_cells(line))
            continue
        if len(block) >= 2:
            facts.extend(_row_facts(chunk, block[0], block[1:]))
        block = []
    return facts


def _row_facts(chunk: Chunk, header: list[str], rows: list[list[str]]) -> list[Fact]:
    if not all(header) or any(_NUMERIC.fullmatch(h) for h in header):  # no header row: nothing names the cells
        return []
    facts = []
    for row in rows:
        if len(row) != len(header) or not row[0]:
            continue
        for column, cell in zip(header[1:], row[1:]):
            found = find_span(cell, whole=True)
            if not found or len(cell.split()) > 12:
                continue
            kind, span, offset = found
            if column.lower() in ("name", "who", "person", "contact"):
                sentence, label = f"The {row[0]} is {cell}.", row[0]
            else:
                sentence, label = f"The {column} for {row[0]} is {cell}.", f"{column} for {row[0]}"
            start = sentence.rindex(cell) + offset
            facts.append(Fact(chunk, sentence, span, kind, start, label=label))
    return facts


_WH = {kind: wh for kind, _, wh in SPAN_PATTERNS}


def wh_question(fact: Fact) -> str:
    """The sentence with its span replaced by a wh-phrase: fronted when the span opens the sentence
    ("Who leads the Oslo office?"), an echo question otherwise ("The office opened in what year?")."""
    if fact.label:
        wh = "Who" if fact.kind == "name" else "What"
        return f"{wh} is the {fact.label}?" if not fact.label.lower().startswith("the ") else f"{wh} is {fact.label}?"
    before, after = _before(fact), fact.sentence[fact.span_start + len(fact.span):]
    wh = _WH[fact.kind]
    if fact.kind == "name":
        if not before:
            wh = "who"  # a name opening the sentence is its subject: "Maria Lund leads..." -> "Who leads...?"
        elif before.lower().endswith("the "):
            before, wh = before[:-4], "what"  # "The Little Orrin bakery sells..." -> "What bakery sells...?"
        elif before.lower().rstrip().endswith(("by", "to", "with", "of", "for", "from")):
            wh = "whom"
        else:
            wh = "what"
    elif fact.kind == "date" and re.fullmatch(rf"(?:{_MONTHS})\s+\d{{4}}", fact.span):
        wh = "what month and year"
    body = f"{before}{wh}{after}".strip().rstrip(".!?").rstrip()
    return body[0].upper() + body[1:] + "?"


_KEYWORD_WH = {"date": "When", "year": "In what year", "money": "How much", "percent": "What percentage",
               "time": "At what time", "code": "What code", "number": "What number", "quantity": "How many"}
_CLAUSE = re.compile(r"[,;:()]|\s(?:and|but|which|who|while|where|because)\s")


def keyword_question(fact: Fact) -> str:
    """A terse question from a few words around the span: "When Oslo office opened?" (less overlap
    with the sentence than an echo question, as a user's own wording has)."""
    if fact.label:
        return wh_question(fact)
    start, end = fact.span_start, fact.span_start + len(fact.span)
    bounds = [0] + [m.end() for m in _CLAUSE.finditer(fact.sentence) if m.end() <= start]
    left = max(bounds)
    stops = [m.start() for m in _CLAUSE.finditer(fact.sentence) if m.start() >= end]
    right = min(stops) if stops else len(fact.sentence)
    before = [w for w in re.findall(r"[\w'’€$£%-]+", fact.sentence[left:start]) if w.lower() not in _STOP]
    after_words = re.findall(r"[\w'’€$£%-]+", fact.sentence[end:right])
    attributive = fact.sentence[left:start].lower().rstrip().endswith("the")
    wh = _KEYWORD_WH.get(fact.kind, "Who" if fact.kind == "name" and not before and not attributive else "What")
    if fact.kind == "quantity" and after_words:
        wh, after_words = f"How many {after_words[0]}", after_words[1:]
    # other numbers are other facts: leave them out
    after = [w for w in after_words if w.lower() not in _STOP and not any(c.isdigit() for c in w)]
    words = before[-4:] + after[: 2 if before else 4]
    return f"{wh} {' '.join(words)}?".replace(" ?", "?")


def cloze_question(fact: Fact) -> str:
    """``Fill in the blank: <sentence with the span as _____>``."""
    blanked = _before(fact) + "_____" + fact.sentence[fact.span_start + len(fact.span):]
    return f"Fill in the blank: {blanked}"


def quote_answer(fact: Fact, n: int) -> str:
    """The sentence, quoted, citing its document as [n] before the final punctuation."""
    sentence = fact.sentence.rstrip()
    end = sentence[-1] if sentence[-1] in ".!?" else "."
    return f"{sentence.rstrip('.!?').rstrip()} [{n}]{end}"


def _before(fact: Fact) -> str:
    return fact.sentence[: fact.span_start]


# --- distractors and leakage ---------------------------------------------------------------

def _distractors(kb, question: str, fact: Fact, settings: GroundingSettings, chunks: list[Chunk],
                 rng: random.Random) -> list[Chunk]:
    """Chunks the KB's search returns for the question, without the oracle or any chunk holding the span;
    random chunks fill up when the search returns too few."""
    span = f" {_norm(fact.span)} "

    def usable(chunk: Chunk) -> bool:
        return chunk.chunk_id != fact.chunk.chunk_id and span not in f" {_norm(chunk.text)} "

    picked: list[Chunk] = []
    hits = kb.search(question, k=settings.k * 3 + 2, mode=settings.retrieval_mode, source_prefix=settings.source_prefix)
    for hit in hits:
        chunk = getattr(hit, "chunk", hit)
        if usable(chunk) and chunk.chunk_id not in {c.chunk_id for c in picked}:
            picked.append(chunk)
        if len(picked) == settings.k:
            return picked
    pool = [c for c in rng.sample(chunks, min(len(chunks), settings.k * 4 + 4)) if usable(c)]
    for chunk in pool:
        if len(picked) == settings.k:
            break
        if chunk.chunk_id not in {c.chunk_id for c in picked}:
            picked.append(chunk)
    return picked


class LeakageGuard:
    """Keeps evaluation answers and questions out of training data."""

    def __init__(self, exclude: Iterable = ()):
        self.answers: list[str] = []
        self.questions: list[set[str]] = []
        for item in exclude:
            if isinstance(item, str):
                self.answers.append(_norm(item))
                self.questions.append(set(_content(item)))
                continue
            get = item.get if isinstance(item, dict) else lambda k, d=None, it=item: getattr(it, k, d)
            self.answers.extend(_norm(a) for a in (get("answers", ()) or ()))
            if get("question"):
                self.questions.append(set(_content(get("question"))))
        self.answers = [a for a in self.answers if len(a) >= 2]
        self.questions = [q for q in self.questions if q]

    def leaks(self, sentence: str) -> bool:
        """True if ``sentence`` contains an evaluation answer (whole words, normalised)."""
        padded = f" {_norm(sentence)} "
        return any(f" {a} " in padded for a in self.answers)

    def repeats(self, question: str) -> bool:
        """True if ``question`` shares 70% or more of an evaluation question's content words."""
        words = set(_content(question))
        return any(len(words & q) >= 0.7 * len(q) for q in self.questions)


_STOP = frozenset("a an the of in on at to for by with from and or is are was were be been has have had it its "
                  "their our his her this that these those there as per most about into after before over under "
                  "than up each every all some any no not only also just very can will may must should would "
                  "what who whom when where which how many much does do did fill blank".split())


def _norm(text: str) -> str:
    text = re.sub(r"\[\d{1,3}\]", " ", text.lower())
    text = re.sub(r"(?<=\d)[.,](?=\d)", "", text)
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _content(text: str) -> list[str]:
    return [w for w in _norm(text).split() if w not in _STOP]


def _spread(facts_by_chunk: list[list[Fact]], n: int, rng: random.Random) -> list[Fact]:
    """``n`` facts spread over chunks: round-robin over shuffled chunks, one fact per chunk per pass;
    when every fact is used, the set repeats with fresh question forms."""
    pools = [rng.sample(f, len(f)) for f in facts_by_chunk]
    rng.shuffle(pools)
    ordered: list[Fact] = []
    depth = 0
    while len(ordered) < sum(len(p) for p in pools):
        ordered.extend(p[depth] for p in pools if depth < len(p))
        depth += 1
    return [ordered[i % len(ordered)] for i in range(n)]


def grounding_fingerprint(examples: Sequence[GroundingExample]) -> str:
    """A short hash of the examples' messages (to tell two grounding sets apart)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps(ex.messages, sort_keys=True).encode())
    return digest.hexdigest()[:16]
