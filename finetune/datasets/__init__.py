"""Training data: one module per format, all converted to chat messages and checked before any model loads.

    examples = load_examples("data.jsonl")            # format detected from the first record
    examples = load_examples("chats.json", "sharegpt")  # or forced

Formats register by name in ``FORMATS`` (alpaca, sharegpt, messages); each module has
``matches(record)`` and ``to_messages(record, where)``.
"""

from __future__ import annotations

from pathlib import Path

from finetune.datasets import alpaca, messages, sharegpt
from finetune.datasets.records import Example, read_records
from finetune.errors import DatasetError

FORMATS = {module.NAME: module for module in (messages, sharegpt, alpaca)}

__all__ = ["Example", "FORMATS", "detect_format", "load_examples", "read_records", "write_examples"]


def detect_format(record: dict, where: str) -> str:
    """The name of the format ``record`` is in, or a ``DatasetError`` saying what was expected."""
    for name, module in FORMATS.items():
        if module.matches(record):
            return name
    keys = ", ".join(sorted(record)[:8]) or "none"
    raise DatasetError(
        f"{where}: cannot tell the format (keys: {keys}); expected 'messages' (chat), 'conversations' "
        "(sharegpt) or 'instruction' + 'output' (alpaca), or pass --format"
    )


def load_examples(path: str | Path, format: str = "auto") -> list[Example]:
    """Read and validate every record of a JSON/JSONL file into chat-messages ``Example`` objects.

    ``format`` is ``auto`` (decided by the first record, then enforced on every line) or a name in
    ``FORMATS``. Any bad record raises ``DatasetError`` naming ``file:line`` and the field.
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise DatasetError(f"unknown data format {format!r}; use auto or one of {', '.join(FORMATS)}")
    examples: list[Example] = []
    module = None if format == "auto" else FORMATS[format]
    for line, record in read_records(path):
        where = f"{path}:{line}"
        if module is None:
            module = FORMATS[detect_format(record, where)]
        examples.append(Example(module.to_messages(record, where), str(path), line, module.NAME))
    if not examples:
        raise DatasetError(f"{path}: no records; expected one JSON object per line (or a JSON array)")
    return examples


def write_examples(examples: list[Example] | list[dict], path: str | Path) -> Path:
    """Write examples (or ``{"messages": ...}`` dicts) as chat-messages JSONL, one per line."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for example in examples:
            record = example.to_dict() if isinstance(example, Example) else example
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
