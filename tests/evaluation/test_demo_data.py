"""The bundled demo domain (evaluation/demo_data/) is consistent: answers are where the eval says they are.

Documents are read the way the loaders read them: pypdf for PDF, python-docx paragraphs and table
cells for DOCX, and HTML without its nav, header, footer, aside, form, script and style noise.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml

DEMO = Path(__file__).resolve().parents[2] / "evaluation" / "demo_data"
HTML_NOISE = ["script", "style", "noscript", "nav", "header", "footer", "aside", "form"]
# Words that name the organisation: general/ must not mention any of them.
ORG_TERMS = ["Saltreach", "Vellmar", "Aldric", "Skelly Holm", "Brannock", "Orrin", "Gulvane", "Kelderby",
             "Harbour Desk", "Tidecard", "Berthline", "Corrie Dawn", "Kestrel Vane"]
# The subject of each unanswerable question: if no document mentions it, no document answers it.
ABSENT_TERMS = {
    "u001": ["mascot"],
    "u002": ["berth"],
    "u003": ["logo"],
    "u004": ["fax"],
    "u005": ["lifeboat"],
    "u006": ["speed limit"],
    "u007": ["horsebox", "horse box", "horse"],
    "u008": ["instagram"],
    "u009": ["postcode", "post code", "postal code"],
    "u010": ["magazine"],
    "u011": ["predecessor", "previous chief executive", "former chief executive", "before Ilse Varnhorst"],
    "u012": ["whatsapp"],
    "u013": ["unaccompanied child", "unaccompanied children", "unaccompanied minor", "without an adult", "travelling alone",
             "children travelling on their own"],
    "u014": ["tonnage", "gross tons"],
    "u015": ["gift voucher", "gift card", "gift certificate"],
    "u016": ["vhf", "radio channel"],
    "u017": ["student fare", "student discount", "student rate", "students get", "student card"],
    "u018": ["loyalty points", "loyalty scheme", "loyalty card", "reward points", "air miles", "points per journey"],
}


def _normalise(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").replace("\u00a0", " ").lower().split())


def _occurs(phrase: str, text: str) -> bool:
    """Case-insensitive, whitespace-insensitive match of a whole phrase (not inside a longer word or number)."""
    return re.search(rf"(?<![\w.,]){re.escape(_normalise(phrase))}(?![\w]|[.,]\d)", _normalise(text)) is not None


def _extract(path: Path) -> str:
    """A document's text as a loader extracts it."""
    if path.suffix == ".pdf":
        from pypdf import PdfReader

        return "\n".join(page.extract_text() for page in PdfReader(path).pages)
    if path.suffix == ".docx":
        import docx

        document = docx.Document(path)
        cells = [cell.text for table in document.tables for row in table.rows for cell in row.cells]
        return "\n".join([p.text for p in document.paragraphs] + cells)
    if path.suffix == ".html":
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        for tag in soup(HTML_NOISE):
            tag.decompose()
        return soup.get_text(" ")
    return path.read_text(encoding="utf-8")


@cache
def _text(rel: str) -> str:
    return _extract(DEMO / rel)


def _html_noise(rel: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((DEMO / rel).read_text(encoding="utf-8"), "html.parser")
    return " ".join(tag.get_text(" ") for tag in soup(HTML_NOISE))


def _docs(folder: str) -> list[str]:
    return sorted(p.relative_to(DEMO).as_posix() for p in (DEMO / folder).iterdir() if p.is_file())


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return _jsonl("eval.jsonl")


@pytest.fixture(scope="module")
def style_examples() -> list[dict]:
    return _jsonl("style.jsonl")


def _answerable(questions, fresh: bool) -> list[dict]:
    return [q for q in questions if q["answerable"] and bool(q.get("freshness")) == fresh]


def test_every_line_of_eval_and_style_parses_as_one_json_object():
    for name in ("eval.jsonl", "style.jsonl"):
        for n, line in enumerate((DEMO / name).read_text(encoding="utf-8").splitlines(), start=1):
            assert isinstance(json.loads(line), dict), f"{name}:{n}"


def test_eval_questions_have_the_harness_fields_and_unique_ids(questions):
    checks = yaml.safe_load((DEMO / "style_checks.yaml").read_text())
    for q in questions:
        assert set(q) <= {"id", "question", "answers", "sources", "answerable", "style", "freshness"}, q["id"]
        assert isinstance(q["question"], str) and q["question"].endswith("?"), q["id"]
        assert isinstance(q["answers"], list) and all(isinstance(a, str) and a for a in q["answers"]), q["id"]
        assert isinstance(q["answerable"], bool), q["id"]
        assert q.get("style") in (None, *checks), q["id"]
        for source in q["sources"]:
            assert (DEMO / source).is_file(), f"{q['id']}: missing source {source}"
    assert len({q["id"] for q in questions}) == len(questions)
    assert len({_normalise(q["question"]) for q in questions}) == len(questions)


def test_eval_set_mixes_answerable_unanswerable_freshness_and_style_questions(questions):
    assert len(questions) >= 130
    assert len(_answerable(questions, fresh=False)) >= 100
    assert sum(not q["answerable"] for q in questions) >= 18
    assert len(_answerable(questions, fresh=True)) >= 10
    assert sum(q.get("style") == "house" for q in questions) >= 18


def test_knowledge_base_has_32_documents_in_the_stated_format_mix():
    formats = Counter(Path(p).suffix for p in _docs("kb"))
    assert sum(formats.values()) >= 32
    assert formats[".md"] >= 12 and formats[".html"] >= 8 and formats[".pdf"] >= 5 and formats[".docx"] >= 5
    assert set(formats) == {".md", ".html", ".pdf", ".docx"}


def test_every_document_has_200_to_700_words():
    for rel in _docs("kb") + _docs("freshness"):
        words = len(_text(rel).split())
        assert 200 <= words <= 700, f"{rel}: {words} words"


def test_pdfs_have_several_pages_and_docx_have_headings_and_a_table():
    import docx
    from pypdf import PdfReader

    for rel in _docs("kb"):
        if rel.endswith(".pdf"):
            assert len(PdfReader(DEMO / rel).pages) >= 2, rel
        elif rel.endswith(".docx"):
            document = docx.Document(DEMO / rel)
            assert any(p.style.name.startswith("Heading") for p in document.paragraphs), rel
            assert document.tables, rel


def test_html_pages_carry_nav_script_and_footer_noise_without_any_answer(questions):
    answers = [a for q in questions for a in q["answers"]]
    for rel in _docs("kb"):
        if rel.endswith(".html"):
            raw = (DEMO / rel).read_text(encoding="utf-8")
            assert "<nav" in raw and "<script" in raw and "<footer" in raw, rel
            noise = _html_noise(rel)
            assert not [a for a in answers if _occurs(a, noise)], rel


def test_each_answer_span_occurs_in_every_listed_source(questions):
    for q in (q for q in questions if q["answerable"]):
        assert q["answers"] and q["sources"], q["id"]
        for source in q["sources"]:
            assert _occurs(q["answers"][0], _text(source)), f"{q['id']}: {q['answers'][0]!r} not in {source}"


def test_answer_variants_restate_the_span_as_written(questions):
    def tokens(s):
        return set(re.findall(r"\w+", _normalise(s)))

    for q in (q for q in questions if q["answerable"]):
        span = q["answers"][0]
        for variant in q["answers"][1:]:
            same_digits = re.sub(r"\D", "", variant) == re.sub(r"\D", "", span) != ""
            same_letters = re.sub(r"\W", "", variant.lower()) == re.sub(r"\W", "", span.lower())
            assert same_digits or same_letters or tokens(variant) & tokens(span), f"{q['id']}: {variant!r}"


def test_questions_are_reworded_not_copied_from_their_source(questions):
    def ngrams(text, n=7):
        words = re.findall(r"\w+", _normalise(text))
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    for q in (q for q in questions if q["answerable"]):
        for source in q["sources"]:
            assert not ngrams(q["question"]) & ngrams(_text(source)), f"{q['id']} copies {source}"


def test_unanswerable_questions_have_no_answer_and_no_document_mentions_their_subject(questions):
    corpus = [_text(rel) for rel in _docs("kb") + _docs("freshness")]
    unanswerable = [q for q in questions if not q["answerable"]]
    assert {q["id"] for q in unanswerable} == set(ABSENT_TERMS)
    for q in unanswerable:
        assert q["answers"] == [] and q["sources"] == [], q["id"]
        for term in ABSENT_TERMS[q["id"]]:
            assert not any(_occurs(term, text) for text in corpus), f"{q['id']}: {term!r} is in a document"


def test_knowledge_base_questions_cite_kb_and_freshness_questions_cite_freshness(questions):
    for q in _answerable(questions, fresh=False):
        assert all(s.startswith("kb/") for s in q["sources"]), q["id"]
    for q in _answerable(questions, fresh=True):
        assert all(s.startswith("freshness/") for s in q["sources"]), q["id"]


def test_freshness_answers_occur_only_in_freshness_documents(questions, style_examples):
    elsewhere = [_text(rel) for rel in _docs("kb") + _docs("general")]
    elsewhere.append(json.dumps(style_examples, ensure_ascii=False))
    for q in _answerable(questions, fresh=True):
        for answer in q["answers"]:
            assert not any(_occurs(answer, text) for text in elsewhere), f"{q['id']}: {answer!r} leaks"


def test_no_eval_answer_or_question_appears_in_the_style_set_or_general_text(questions, style_examples):
    style_text = "\n".join(m["content"] for ex in style_examples for m in ex["messages"])
    general = {rel: _text(rel) for rel in _docs("general")}
    for q in questions:
        for answer in q["answers"]:
            assert not _occurs(answer, style_text), f"{q['id']}: {answer!r} is in style.jsonl"
            assert not [rel for rel, text in general.items() if _occurs(answer, text)], f"{q['id']}: {answer!r}"
        assert _normalise(q["question"]) not in _normalise(style_text), q["id"]


def test_style_set_has_120_user_assistant_examples_that_pass_the_house_check(style_examples):
    house = yaml.safe_load((DEMO / "style_checks.yaml").read_text())["house"]
    assert set(house) == {"required_phrases", "regex", "max_words"}
    assert len(style_examples) >= 120
    assert len({ex["messages"][0]["content"] for ex in style_examples}) == len(style_examples)
    for n, ex in enumerate(style_examples, start=1):
        roles = [m["role"] for m in ex["messages"]]
        assert roles == ["user", "assistant"], n
        reply = ex["messages"][1]["content"]
        assert all(phrase in reply for phrase in house["required_phrases"]), n
        assert re.search(house["regex"], reply), n
        assert len(reply.split()) <= house["max_words"], n


def test_house_check_rejects_a_plain_answer():
    house = yaml.safe_load((DEMO / "style_checks.yaml").read_text())["house"]
    assert not re.search(house["regex"], "A dog ticket costs a few euros [1].")
    assert re.search(house["regex"], "Good tide! A dog ticket costs a few euros [1].\n\u2014 Harbour Desk")


def test_general_text_is_40_passages_of_150_to_400_words_not_about_the_organisation():
    passages = _docs("general")
    assert len(passages) >= 40 and all(rel.endswith(".md") for rel in passages)
    for rel in passages:
        text = _text(rel)
        assert 150 <= len(text.split()) <= 400, f"{rel}: {len(text.split())} words"
        assert not [t for t in ORG_TERMS if _occurs(t, text)], rel
        assert len(re.findall(r"\d", text)) >= 5, f"{rel}: too few figures for extractive questions"


def test_make_binaries_rebuilds_the_committed_documents_deterministically(tmp_path):
    spec = importlib.util.spec_from_file_location("make_binaries", DEMO / "make_binaries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.build_binaries(tmp_path / "a")
    second = module.build_binaries(tmp_path / "b")
    assert sorted(p.name for p in first) == sorted(Path(p).name for p in _docs("kb") if p.endswith((".pdf", ".docx")))
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    for path in first:  # the committed file has the same text (its bytes may differ across library versions)
        assert _extract(path) == _text(f"kb/{path.name}"), path.name


def test_demo_data_stays_small():
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 1_000_000


def test_the_holdout_set_asks_new_questions_that_its_sources_answer(questions):
    """holdout.jsonl: questions written after the eval's failures were read, for a check not fitted to them."""
    from evaluation.qa import load_qa

    held = _jsonl("holdout.jsonl")
    load_qa(DEMO / "holdout.jsonl", set())  # the harness reads it
    seen = {_normalise(q["question"]) for q in questions}
    assert not [h["id"] for h in held if _normalise(h["question"]) in seen]
    assert len({h["id"] for h in held}) == len(held) >= 25
    for h in held:
        for source in h.get("sources", []):
            assert any(_occurs(a, _text(source)) for a in h["answers"]), f"{h['id']}: no answer in {source}"
        assert bool(h["answers"]) == h.get("answerable", True), h["id"]
