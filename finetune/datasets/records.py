"""A training example and the JSON / JSONL reader that remembers where each record came from.

Every later error (missing field, empty answer, a chat template that refuses the turns) names
``file:line``, so the reader keeps the 1-based line on which each record starts, for JSONL and
for a JSON array alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from finetune.errors import DatasetError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """One conversation in chat-messages form (``role``/``content``), with where it came from."""

    messages: tuple[dict, ...]
    source: str
    line: int
    format: str

    @property
    def where(self) -> str:
        """``file:line`` for messages about this example."""
        return f"{self.source}:{self.line}"

    def to_dict(self) -> dict:
        """The example as a chat-messages record (what ``--format messages`` reads back)."""
        return {"messages": [dict(m) for m in self.messages]}


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, record)`` for each JSON object in a JSONL file or a JSON array (or single object) file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file" + ("" if not path.exists() else " (it is a folder)"))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _json_array(path, text)
        return
    if stripped.startswith("{") and "\n" in stripped.rstrip() and _is_single_json(text):  # one pretty-printed object
        line = _line_of(text, len(text) - len(stripped))
        yield line, _as_object(path, line, json.loads(text))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
            ) from None
        yield number, _as_object(path, number, value)


def _is_single_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _json_array(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """Decode a JSON array element by element so each record keeps its starting line."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    expect_value = True
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text):
            raise DatasetError(f"{path}:{_line_of(text, pos)}: the JSON array is not closed with ']'")
        if text[pos] == "]":
            if _skip_space(text, pos + 1) < len(text):
                raise DatasetError(f"{path}:{_line_of(text, pos + 1)}: unexpected text after the closing ']'")
            return
        if not expect_value:
            if text[pos] != ",":
                raise DatasetError(f"{path}:{_line_of(text, pos)}: expected ',' or ']' between records")
            pos = _skip_space(text, pos + 1)
        line = _line_of(text, pos)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        expect_value = False
        yield line, _as_object(path, line, value)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _as_object(path: Path, line: int, value) -> dict:
    if not isinstance(value, dict):
        raise DatasetError(f"{path}:{line}: expected a JSON object per record, got {type(value).__name__}")
    return value


def require_text(record: dict, key: str, where: str, *, field: str | None = None, allow_empty: bool = False,
                 answer: bool = False) -> str:
    """``record[key]`` as a string; a ``DatasetError`` naming ``where`` and the field if missing, not text or empty.

    ``answer`` marks the assistant text the model learns, so the messages say "answer".
    """
    name = field or key
    if key not in record or record[key] is None:
        raise DatasetError(f"{where}: missing field {name!r}" + (" (the answer to learn)" if answer else ""))
    value = record[key]
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field {name!r} must be text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        if answer:
            raise DatasetError(f"{where}: empty answer in field {name!r}; write the answer or remove the example")
        raise DatasetError(f"{where}: field {name!r} is empty")
    return value


def check_conversation(messages: list[dict], where: str, field: str) -> tuple[dict, ...]:
    """Check a converted conversation: system only first, at least one answer, ending with the assistant."""
    for i, message in enumerate(messages):
        if message["role"] == "system" and i != 0:
            raise DatasetError(f"{where}: {field}[{i}] is a system message after the first turn; put it first")
    if not any(m["role"] == "assistant" for m in messages):
        raise DatasetError(f"{where}: field {field!r} has no assistant answer to learn from")
    if messages[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: field {field!r} ends with a {messages[-1]['role']} turn; "
                           "the conversation must end with the assistant's answer")
    return tuple(messages)
