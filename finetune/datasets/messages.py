"""Chat-messages records: ``messages``, a list of ``{"role": ..., "content": ...}`` (the OpenAI format).

Roles are ``system``, ``user`` and ``assistant``. ``content`` is text, or a list of
``{"type": "text", "text": ...}`` parts that are joined. This is the format ``build_grounding_set``
writes and the one every other format is converted to.
"""

from __future__ import annotations

from finetune.datasets.records import ROLES, check_conversation, require_text
from finetune.errors import DatasetError

NAME = "messages"
KEYS = ("messages",)


def matches(record: dict) -> bool:
    """True if ``record`` looks like a chat-messages record."""
    return "messages" in record


def to_messages(record: dict, where: str) -> tuple[dict, ...]:
    """Validate one chat-messages record, or raise ``DatasetError`` naming the message and field."""
    items = record.get("messages")
    if items is None:
        raise DatasetError(f"{where}: missing field 'messages'")
    if not isinstance(items, list) or not items:
        raise DatasetError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} objects")
    messages = []
    for i, item in enumerate(items):
        field = f"messages[{i}]"
        if not isinstance(item, dict):
            raise DatasetError(f"{where}: field {field!r} must be an object with 'role' and 'content'")
        role = require_text(item, "role", where, field=f"{field}.role")
        if role not in ROLES:
            raise DatasetError(f"{where}: field '{field}.role' has unknown role {role!r}; use one of {', '.join(ROLES)}")
        content = item.get("content")
        if isinstance(content, list):
            content = _join_parts(content, where, f"{field}.content")
        text = require_text({"content": content}, "content", where, field=f"{field}.content",
                            answer=role == "assistant")
        messages.append({"role": role, "content": text})
    return check_conversation(messages, where, "messages")


def _join_parts(parts: list, where: str, field: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise DatasetError(f"{where}: field '{field}[{j}]' must be {{\"type\": \"text\", \"text\": ...}}; "
                               "only text parts can be trained on")
        texts.append(part["text"])
    return "".join(texts)
