"""The second evaluation domain (evaluation/domains/sqlite/) is sound: answers are where its questions say.

Documents are read by ragtune's own loaders (``ingest.loaders.load_document``), so a span that
passes here is a span the knowledge base holds. The test split is frozen: these checks guard
the data, they never change it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from evaluation.qa import load_qa
from ingest.loaders import load_document

DOMAIN = Path(__file__).resolve().parents[2] / "evaluation" / "domains" / "sqlite"
SPLITS = ("test.jsonl", "dev.jsonl")
FIELDS = {"id", "question", "answers", "sources", "answerable", "paraphrased"}
# Texts reserved for an outside check of transfer: none of them may appear in this domain.
RESERVED_NAMES = re.compile(r"python|pydoc|libffi|libtasn1|shared-mime|mime-info", re.IGNORECASE)
RESERVED_TEXT = ["Python Software Foundation", "docs.python.org", "pydoc", "libffi", "libtasn1", "shared-mime-info",
                 "freedesktop.org.xml"]
# The subject of each unanswerable question: if no document mentions it, no document answers it.
ABSENT_TERMS = {
    "What is the syntax for creating a stored procedure in SQLite?": ["stored procedure", "CREATE PROCEDURE"],
    "How many triggers can be attached to one table at most?": ["triggers per table", "maximum number of triggers"],
    "In which SQLite version did RIGHT and FULL OUTER JOIN become available?": ["RIGHT JOIN", "FULL OUTER",
                                                                              "RIGHT OUTER"],
    "What is the longest table name SQLite accepts?": ["length of a table name", "table name length", "name length"],
    "How much does an annual SQLite support contract cost?": ["support contract", "annual", "per annum"],
    "Which TCP port does scp connect to when -P is not given?": ["port 22", "default port"],
    "When was SQLite 4 released?": ["SQLite 4", "sqlite4", "version 4."],
    "How do I set a password that protects an SQLite database file?": ["database password", "password protect",
                                                                        "password-protect", "PRAGMA key"],
    "Which versions of Windows does the sqlite3 shell support?": ["Windows 10", "Windows 7", "Windows XP", "Windows 11",
                                                                   "Windows Vista"],
}


def _normalise(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").replace("\u00a0", " ").lower().split())


def _occurs(phrase: str, text: str) -> bool:
    """Case- and whitespace-insensitive match of a whole phrase (not inside a longer word or number)."""
    return re.search(rf"(?<![\w.,]){re.escape(_normalise(phrase))}(?![\w]|[.,]\d)", _normalise(text)) is not None


def _documents() -> list[str]:
    return sorted(p.relative_to(DOMAIN).as_posix() for p in (DOMAIN / "docs").rglob("*") if p.is_file())


@cache
def _text(rel: str) -> str:
    return load_document(DOMAIN / rel).text


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DOMAIN / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: _rows(name) for name in SPLITS}


def test_both_splits_load_as_qa_files_with_the_expected_sizes(splits):
    assert [len(load_qa(DOMAIN / name)) for name in SPLITS] == [60, 30]
    for name, rows in splits.items():
        for row in rows:
            assert set(row) <= FIELDS, f"{name}: {row['id']}"
            assert row["question"].endswith("?"), row["id"]
            assert row.get("paraphrased", True) is True, row["id"]  # only ever written as true


def test_ids_are_unique_and_no_question_is_in_both_splits(splits):
    ids = [row["id"] for rows in splits.values() for row in rows]
    assert len(set(ids)) == len(ids) == 90
    test = {_normalise(row["question"]) for row in splits["test.jsonl"]}
    dev = {_normalise(row["question"]) for row in splits["dev.jsonl"]}
    assert len(test) == 60 and len(dev) == 30
    assert not test & dev


def test_about_a_tenth_unanswerable_and_a_fifth_paraphrased(splits):
    rows = [row for rows in splits.values() for row in rows]
    unanswerable = [row for row in rows if not row["answerable"]]
    assert 7 <= len(unanswerable) <= 12
    assert all(row["answers"] == [] and row["sources"] == [] for row in unanswerable)
    assert 14 <= sum(bool(row.get("paraphrased")) for row in rows) <= 24
    assert all(row["answerable"] for row in rows if row.get("paraphrased"))
    # each split has some of each kind, so neither is all easy questions
    for name, split in splits.items():
        assert any(not r["answerable"] for r in split) and any(r.get("paraphrased") for r in split), name


def test_every_accepted_answer_occurs_in_one_of_its_sources_as_the_loaders_read_it(splits):
    for row in (r for rows in splits.values() for r in rows if r["answerable"]):
        assert row["answers"] and row["sources"], row["id"]
        for source in row["sources"]:
            assert (DOMAIN / source).is_file(), f"{row['id']}: missing source {source}"
        # a variant may sit inside a longer token ("SQLITE_OMIT_JSON" in "-DSQLITE_OMIT_JSON"); it must still be there
        for answer in row["answers"]:
            assert any(_normalise(answer) in _normalise(_text(s)) for s in row["sources"]), \
                f"{row['id']}: {answer!r} not in {row['sources']}"


def test_the_first_answer_is_the_span_in_every_listed_source(splits):
    for row in (r for rows in splits.values() for r in rows if r["answerable"]):
        for source in row["sources"]:
            assert _occurs(row["answers"][0], _text(source)), f"{row['id']}: {row['answers'][0]!r} not in {source}"


def test_no_document_mentions_an_unanswerable_questions_subject(splits):
    corpus = [_text(rel) for rel in _documents()]
    unanswerable = [r for rows in splits.values() for r in rows if not r["answerable"]]
    assert {r["question"] for r in unanswerable} == set(ABSENT_TERMS)
    for row in unanswerable:
        for term in ABSENT_TERMS[row["question"]]:
            assert not any(_occurs(term, text) for text in corpus), f"{row['id']}: {term!r} is in a document"


def test_questions_are_written_not_copied_from_their_sources(splits):
    def ngrams(text, n=7):
        words = re.findall(r"\w+", _normalise(text))
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    for row in (r for rows in splits.values() for r in rows if r["answerable"]):
        for source in row["sources"]:
            assert not ngrams(row["question"]) & ngrams(_text(source)), f"{row['id']} copies {source}"


def test_no_document_comes_from_the_texts_reserved_for_the_outside_check():
    documents = _documents()
    assert documents, f"no documents under {DOMAIN / 'docs'}"
    for rel in documents:
        assert not RESERVED_NAMES.search(rel), rel
        text = _text(rel)
        assert not [marker for marker in RESERVED_TEXT if marker.lower() in text.lower()], rel


def test_knowledge_base_mixes_html_text_and_pdf_in_40_to_60_documents_under_2_mb():
    documents = _documents()
    formats = Counter(Path(rel).suffix for rel in documents)
    assert 40 <= len(documents) <= 60
    assert formats[".html"] >= 30 and formats[".txt"] >= 2 and formats[".pdf"] >= 2
    assert set(formats) <= {".html", ".txt", ".pdf"}
    total = sum(p.stat().st_size for p in DOMAIN.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 2_100_000
    for rel in documents:
        assert len(_text(rel).split()) >= 100, rel  # every document reads as text, none is an empty shell


def test_every_document_is_cited_by_the_readme_with_its_licence():
    readme = (DOMAIN / "README.md").read_text(encoding="utf-8")
    for rel in _documents():
        name = Path(rel).stem
        assert name in readme, f"{rel}: provenance missing from README.md"
    for licence in ("public domain", "CC-BY-3.0", "OpenSSH", "BSD-3-clause"):
        assert licence in readme
