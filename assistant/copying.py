"""Copied numbers: an answer from documents writes only numbers that the documents or question hold.

A small model reading "the fare is €14.60" may write €16.40: a number that looks right and is
wrong, the costliest kind of error in an answer about fares, times or dates. ``NumberGuard`` is a
decoding constraint for the local backend. At every step it masks the tokens that would start or
extend a number that is not a prefix of one in the conversation, and, while the number being
written is only a prefix (``14`` of ``14.60``), every token that would end it.

A number is a digit run with the runs that a ``.``, ``:`` or ``,`` joins to it ("14.60",
"06:40", "1,200", "14.03.2026"), compared whole, with the three separators taken as one (the
answer may write "6.40" for "06:40"). The part before a separator stands alone too ("14" of
"14.60": a rounding), the parts after it do not: "98.1%" lets an answer write 98.1 or 98, not 1.
A number without its leading zeros ("6:40") and thousands groups joined ("1200" for "1,200") are
allowed too. That stops numbers whose digits the prompt never shows, not a shown number put in
the wrong place. Inside a citation's brackets nothing is masked: a made-up [9] is the citation
filter's to remove, not a number to turn into a real but wrong [1].

When no allowed continuation is left (all of them masked), the step runs unconstrained: the guard
never makes the model stop mid-answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBER = re.compile(r"[0-9]+(?:[.:,][0-9]+)*")
_SEPARATORS = re.compile(r"[.:,]")
_GROUPED = re.compile(r"(?<![0-9])[0-9]{1,3}(?:[,\u202f\u00a0 ][0-9]{3})+(?![0-9])")
_PENDING = re.compile(r"[0-9]+(?:[.:,][0-9]+)*[.:,]?$")
_IN_CITATION = re.compile(r"\[[0-9,\s]*$")


def _is_digit(ch: str) -> bool:
    return bool(ch) and "0" <= ch <= "9"


def _has_digit(text: str) -> bool:
    return any("0" <= ch <= "9" for ch in text)


def _same_separators(number: str) -> str:
    return _SEPARATORS.sub(".", number)


def allowed_numbers(texts: Iterable[str]) -> frozenset[str]:
    """The numbers an answer may write (separators as "."): those of ``texts``, each also cut
    before any of its separators, without its leading zeros, and with thousands groups joined."""
    numbers: set[str] = set()
    for text in texts:
        for number in _NUMBER.findall(text or ""):
            parts = _same_separators(number).split(".")
            for head in {parts[0], parts[0].lstrip("0") or "0"}:
                for end in range(1, len(parts) + 1):
                    numbers.add(".".join([head, *parts[1:end]]))
        for grouped in _GROUPED.findall(text or ""):
            numbers.add(re.sub(r"[^0-9]", "", grouped))
    return frozenset(numbers)


class NumberGuard:
    """Masks the tokens that would write a number not in ``numbers`` (see the module docstring).

    ``digit_tokens`` maps every token id whose text holds a digit to that text; it depends only on
    the tokenizer, so backends build it once (``digit_tokens``).
    """

    def __init__(self, numbers: frozenset[str], digit_tokens: dict[int, str]):
        self.numbers = numbers
        self.prefixes = frozenset(n[:i] for n in numbers for i in range(1, len(n) + 1))
        self.digit_tokens = digit_tokens
        self.masked = 0  # steps at which the mask changed the model's first choice

    def _fits(self, pending: str, piece: str) -> bool:
        """Whether ``piece`` may follow text ending in ``pending`` (a number being written, maybe
        up to a separator): every number it completes is allowed, one it leaves open is a prefix."""
        written = pending + piece
        for match in _NUMBER.finditer(written):
            number = _same_separators(match.group(0))
            open_ = match.end() == len(written) and _is_digit(piece[-1:])
            if number not in (self.prefixes if open_ else self.numbers):
                return False
        return True

    def allowed(self, text: str) -> tuple[list[int], bool]:
        """(the digit tokens allowed after ``text``, whether tokens without digits are allowed too)."""
        match = _PENDING.search(text)
        pending = match.group(0) if match else ""
        others = not _is_digit(pending[-1:]) or _same_separators(pending) in self.numbers
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
