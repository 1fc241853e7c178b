"""Copied numbers: an answer from documents writes only digit runs that the documents or question hold.

A small model reading "the fare is €14.60" may write €16.40: a number that looks right and is
wrong, the costliest kind of error in an answer about fares, times or dates. ``NumberGuard`` is a
decoding constraint for the local backend. At every step it masks the tokens that would start or
extend a digit run that is not a prefix of one in the conversation, and, while the digit run being
written is only a prefix (``14`` of ``1460``), every token that would end it. The model still picks
which number to copy, and where. Digit runs are compared one by one, so ``06:40`` allows the runs
``06`` and ``40`` (and ``6``, the same number without its leading zero); ``1,200`` also allows
``1200``. That stops numbers whose digits the prompt never shows, not new combinations of runs it
does ("1.50" where it says "€2.50" and "1 bag"). Inside a citation's brackets nothing is masked: a
made-up [9] is the citation filter's to remove, not a number to turn into a real but wrong [1].

When no allowed continuation is left (all of them masked), the step runs unconstrained: the guard
never makes the model stop mid-answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_RUN = re.compile(r"[0-9]+")
_GROUPED = re.compile(r"(?<![0-9])[0-9]{1,3}(?:[,\u202f\u00a0 ][0-9]{3})+(?![0-9])")
_TRAILING_RUN = re.compile(r"[0-9]+$")
_IN_CITATION = re.compile(r"\[[0-9,\s]*$")


def _is_digit(ch: str) -> bool:
    return bool(ch) and "0" <= ch <= "9"


def _has_digit(text: str) -> bool:
    return any("0" <= ch <= "9" for ch in text)


def allowed_runs(texts: Iterable[str]) -> frozenset[str]:
    """The digit runs an answer may write: those of ``texts``, without leading zeros too, and
    thousands groups joined ("1,200" also gives "1200")."""
    runs: set[str] = set()
    for text in texts:
        for run in _RUN.findall(text or ""):
            runs.add(run)
            runs.add(run.lstrip("0") or "0")
        for grouped in _GROUPED.findall(text or ""):
            runs.add(re.sub(r"[^0-9]", "", grouped))
    return frozenset(runs)


class NumberGuard:
    """Masks the tokens that would write a number not in ``runs`` (see the module docstring).

    ``digit_tokens`` maps every token id whose text holds a digit to that text; it depends only on
    the tokenizer, so backends build it once (``digit_tokens``).
    """

    def __init__(self, runs: frozenset[str], digit_tokens: dict[int, str]):
        self.runs = runs
        self.prefixes = frozenset(run[:i] for run in runs for i in range(1, len(run) + 1))
        self.digit_tokens = digit_tokens
        self.masked = 0  # steps at which the mask changed the model's first choice

    def _fits(self, pending: str, piece: str) -> bool:
        """Whether ``piece`` may follow text ending in the digit run ``pending``."""
        runs = _RUN.findall(pending + piece) if _is_digit(piece[:1]) else _RUN.findall(piece)
        if not _is_digit(piece[:1]) and pending and pending not in self.runs:
            return False
        if not runs:
            return True
        *complete, last = runs
        if any(run not in self.runs for run in complete):
            return False
        return last in self.prefixes if _is_digit(piece[-1:]) else last in self.runs

    def allowed(self, text: str) -> tuple[list[int], bool]:
        """(the digit tokens allowed after ``text``, whether tokens without digits are allowed too)."""
        match = _TRAILING_RUN.search(text)
        pending = match.group(0) if match else ""
        others = not pending or pending in self.runs
        return [i for i, piece in self.digit_tokens.items() if self._fits(pending, piece)], others

    def mask(self, logits, text: str):
        """``logits`` (1-D torch tensor) with the disallowed tokens at -inf, or unchanged when that
        would leave nothing, or when nothing needs masking."""
        import torch

        if _IN_CITATION.search(text):
            return logits
        allowed, others = self.allowed(text)
        if others and len(allowed) == len(self.digit_tokens):
            return logits
        if not allowed and not others:
            return logits
        keep = torch.zeros(logits.shape[-1], dtype=torch.bool)
        if others:
            keep[:] = True
            keep[list(self.digit_tokens)] = False
        if allowed:
            keep[allowed] = True
        masked = logits.masked_fill(~keep, float("-inf"))
        if int(torch.argmax(masked)) != int(torch.argmax(logits)):
            self.masked += 1
        return masked


def digit_tokens(tokenizer) -> dict[int, str]:
    """Every token id of ``tokenizer`` whose decoded text holds a digit, with that text."""
    found = {}
    for token, index in tokenizer.get_vocab().items():
        if _has_digit(token):
            text = tokenizer.decode([index])
            if _has_digit(text):
                found[index] = text
    return found
