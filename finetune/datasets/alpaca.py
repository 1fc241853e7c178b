"""Alpaca records: ``instruction``, optional ``input``, ``output``, optional ``system`` and ``history``.

``history`` is a list of ``[question, answer]`` pairs that come before the instruction, as in
LLaMA-Factory's alpaca format. The instruction and input become one user turn (joined by a
blank line); the output is the assistant turn the model learns.
"""

from __future__ import annotations

from finetune.datasets.records import check_conversation, require_text
from finetune.errors import DatasetError

NAME = "alpaca"
KEYS = ("instruction", "output")


def matches(record: dict) -> bool:
    """True if ``record`` looks like an alpaca record."""
    return "instruction" in record


def to_messages(record: dict, where: str) -> tuple[dict, ...]:
    """Convert one alpaca record to chat messages, or raise ``DatasetError`` naming the field."""
    instruction = require_text(record, "instruction", where)
    extra = require_text(record, "input", where, allow_empty=True) if record.get("input") is not None else ""
    output = require_text(record, "output", where, answer=True)
    messages = []
    if record.get("system") is not None:
        messages.append({"role": "system", "content": require_text(record, "system", where)})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise DatasetError(f"{where}: field 'history' must be a list of [question, answer] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise DatasetError(f"{where}: field 'history[{i}]' must be a [question, answer] pair")
        question = require_text({"q": pair[0]}, "q", where, field=f"history[{i}][0]")
        answer = require_text({"a": pair[1]}, "a", where, field=f"history[{i}][1]")
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return check_conversation(messages, where, "output")
