"""The QA file: one question per JSONL line, validated before any model loads.

Each line is an object with ``id``, ``question``, ``answers`` (accepted answers) and optionally
``sources`` (document paths the answer comes from, matched on their path suffix), ``answerable``
(default true), ``style`` (the name of a style check) and ``freshness`` (true for questions
that only documents added after training answer). Other fields are kept in ``extra``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.errors import EvaluationError


@dataclass(frozen=True)
class QAItem:
    """One evaluation question and what counts as a right answer."""

    id: str
    question: str
    answers: tuple[str, ...]
    sources: tuple[str, ...] = ()
    answerable: bool = True
    style: str | None = None
    freshness: bool = False
    line: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "question": self.question, "answers": list(self.answers), "sources": list(self.sources),
                "answerable": self.answerable, "style": self.style, "freshness": self.freshness}


_KNOWN = {"id", "question", "answers", "sources", "answerable", "style", "freshness"}


def load_qa(path: str | Path, style_names: set[str] | None = None) -> list[QAItem]:
    """Read and validate a QA JSONL file; any problem raises ``EvaluationError`` naming file:line: field.

    ``style_names``: the style checks that exist; a ``style`` naming another one is an error
    (``None`` skips that check).
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: no such QA file; give a JSONL file with one question per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise EvaluationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    items: list[QAItem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); one JSON object per line") from None
        if not isinstance(obj, dict):
            raise EvaluationError(f"{where}: expected a JSON object with id, question and answers, got {type(obj).__name__}")
        item = _item(obj, where, number, style_names)
        if item.id in seen:
            raise EvaluationError(f"{where}: field 'id': {item.id!r} repeats line {seen[item.id]}; ids must be unique")
        seen[item.id] = number
        items.append(item)
    if not items:
        raise EvaluationError(f"{path}: no questions (the file is empty); add one JSON object per line")
    return items


def _item(obj: dict, where: str, number: int, style_names: set[str] | None) -> QAItem:
    if "id" not in obj:
        raise EvaluationError(f"{where}: field 'id' is missing; give each question a unique id")
    if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool) or not str(obj["id"]).strip():
        raise EvaluationError(f"{where}: field 'id': expected a non-empty string or integer, got {obj['id']!r}")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise EvaluationError(f"{where}: field 'question': expected non-empty text, got {question!r}")
    answerable = obj.get("answerable", True)
    if not isinstance(answerable, bool):
        raise EvaluationError(f"{where}: field 'answerable': expected true or false, got {answerable!r}")
    answers = _strings(obj.get("answers", [] if not answerable else None), where, "answers")
    if answerable and not answers:
        raise EvaluationError(f"{where}: field 'answers': an answerable question needs at least one accepted answer "
                              "(or set \"answerable\": false)")
    sources = _strings(obj.get("sources", []), where, "sources")
    style = obj.get("style")
    if style is not None:
        if not isinstance(style, str) or not style.strip():
            raise EvaluationError(f"{where}: field 'style': expected the name of a style check, got {style!r}")
        if style_names is not None and style not in style_names:
            known = ", ".join(sorted(style_names)) or "none: add a style_checks.yaml beside the QA file"
            raise EvaluationError(f"{where}: field 'style': no style check named {style!r} (known: {known})")
    freshness = obj.get("freshness", False)
    if not isinstance(freshness, bool):
        raise EvaluationError(f"{where}: field 'freshness': expected true or false, got {freshness!r}")
    return QAItem(id=str(obj["id"]), question=question.strip(), answers=tuple(answers), sources=tuple(sources),
                  answerable=answerable, style=style, freshness=freshness, line=number,
                  extra={k: v for k, v in obj.items() if k not in _KNOWN})


def _strings(value, where: str, name: str) -> list[str]:
    if value is None:
        raise EvaluationError(f"{where}: field '{name}' is missing; give a list of strings")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise EvaluationError(f"{where}: field '{name}': expected a list of non-empty strings, got {value!r}")
    return [v.strip() for v in value]
