"""Style checks: named sets of rules an answer must pass (phrases, a regex, length, format).

A ``style_checks.yaml`` maps a check's name to its rules::

    house_voice:
      required_phrases: ["Kind regards"]     # each must appear (case-sensitive)
      forbidden_phrases: ["as an AI"]        # none may appear (case-insensitive)
      regex: "\\[\\d+\\]"                    # must match somewhere (re.search)
      max_words: 60
      min_words: 5
      format: bullets                        # one of FORMATS

Rules are registered by name in ``RULES``; a new rule is one function ``(text, value) -> bool``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evaluation.errors import EvaluationError
from retrieval.citations import CITATION_PATTERN

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE)
_MARKDOWN = re.compile(r"(^\s*#{1,6}\s|\*\*|__|^\s*[-*]\s|`)", re.MULTILINE)

FORMATS: dict[str, Callable[[str], bool]] = {
    "bullets": lambda t: len(_BULLET.findall(t)) >= 2,
    "numbered": lambda t: len(_NUMBERED.findall(t)) >= 2,
    "one_paragraph": lambda t: "\n\n" not in t.strip() and not _BULLET.search(t),
    "plain_text": lambda t: not _MARKDOWN.search(t),
    "cited": lambda t: bool(CITATION_PATTERN.search(t)),
}


def _words(text: str) -> int:
    return len(CITATION_PATTERN.sub(" ", text).split())


def _phrases(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


RULES: dict[str, Callable[[str, Any], bool]] = {
    "required_phrases": lambda t, v: all(p in t for p in _phrases(v)),
    "forbidden_phrases": lambda t, v: not any(p.lower() in t.lower() for p in _phrases(v)),
    "regex": lambda t, v: all(re.search(p, t, re.MULTILINE) for p in _phrases(v)),
    "max_words": lambda t, v: _words(t) <= int(v),
    "min_words": lambda t, v: _words(t) >= int(v),
    "format": lambda t, v: all(FORMATS[f](t) for f in _phrases(v)),
}


@dataclass(frozen=True)
class StyleCheck:
    """A named set of rules; ``passes(text)`` is true when every rule holds."""

    name: str
    rules: dict[str, Any] = field(default_factory=dict)

    def results(self, text: str) -> dict[str, bool]:
        """Each rule's verdict on ``text``."""
        return {rule: bool(RULES[rule](text, value)) for rule, value in self.rules.items()}

    def passes(self, text: str) -> bool:
        """True if ``text`` passes every rule."""
        return all(self.results(text).values())


def load_style_checks(path: str | Path) -> dict[str, StyleCheck]:
    """Read a ``style_checks.yaml``; unknown rules, bad regexes and bad values name the check and rule."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise EvaluationError(f"{path}: not valid YAML ({exc}); fix the file") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected a mapping of check names to rules, got {type(data).__name__}")
    return {str(name): parse_style_check(str(name), rules, f"{path}: {name}") for name, rules in data.items()}


def parse_style_check(name: str, rules: Any, where: str = "style check") -> StyleCheck:
    """Validate one check's rules (a mapping of rule name to value)."""
    if not isinstance(rules, dict) or not rules:
        raise EvaluationError(f"{where}: expected a mapping of rules ({', '.join(RULES)}), got {rules!r}")
    for rule, value in rules.items():
        if rule not in RULES:
            raise EvaluationError(f"{where}: unknown rule {rule!r}; known: {', '.join(RULES)}")
        if rule in ("max_words", "min_words"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EvaluationError(f"{where}: {rule}: expected a whole number of words, got {value!r}")
        elif not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise EvaluationError(f"{where}: {rule}: expected text or a list of texts, got {value!r}")
        if rule == "regex":
            for pattern in _phrases(value):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise EvaluationError(f"{where}: regex {pattern!r} does not compile ({exc})") from None
        if rule == "format":
            unknown = [f for f in _phrases(value) if f not in FORMATS]
            if unknown:
                raise EvaluationError(f"{where}: format {unknown[0]!r} unknown; known: {', '.join(FORMATS)}")
    return StyleCheck(name, dict(rules))
