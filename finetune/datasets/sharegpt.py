"""ShareGPT records: ``conversations``, a list of ``{"from": ..., "value": ...}`` turns, optional ``system``.

Speaker names follow the common dumps: ``human``/``user`` ask, ``gpt``/``assistant``/``model``
answer, ``system`` sets the instructions. Any other speaker (``function_call``, ``observation``)
is refused with its line, rather than silently dropped.
"""

from __future__ import annotations

from finetune.datasets.records import check_conversation, require_text
from finetune.errors import DatasetError

NAME = "sharegpt"
KEYS = ("conversations",)
SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
            "system": "system"}


def matches(record: dict) -> bool:
    """True if ``record`` looks like a ShareGPT record."""
    return "conversations" in record


def to_messages(record: dict, where: str) -> tuple[dict, ...]:
    """Convert one ShareGPT record to chat messages, or raise ``DatasetError`` naming the turn and field."""
    turns = record.get("conversations")
    if turns is None:
        raise DatasetError(f"{where}: missing field 'conversations'")
    if not isinstance(turns, list) or not turns:
        raise DatasetError(f"{where}: field 'conversations' must be a non-empty list of {{from, value}} turns")
    messages = []
    if record.get("system") is not None:
        messages.append({"role": "system", "content": require_text(record, "system", where)})
    for i, turn in enumerate(turns):
        field = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise DatasetError(f"{where}: field {field!r} must be an object with 'from' and 'value'")
        speaker = require_text(turn, "from", where, field=f"{field}.from")
        role = SPEAKERS.get(speaker.strip().lower())
        if role is None:
            raise DatasetError(f"{where}: field '{field}.from' has unknown speaker {speaker!r}; "
                               f"use one of {', '.join(SPEAKERS)}")
        value = require_text(turn, "value", where, field=f"{field}.value",
                             answer=role == "assistant")
        messages.append({"role": role, "content": value})
    return check_conversation(messages, where, "conversations")
