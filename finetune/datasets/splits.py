"""Validation split and ``--mix FILE:RATIO``: which examples train, which measure.

The split is a seeded shuffle, so a resumed run sees exactly the same training examples.
A mix ratio is the share of the final training set drawn from that file: ``general.jsonl:0.2``
with 800 task examples adds 200 general ones (sampled without replacement; if the file holds
fewer, all of them, with a warning). Mixed examples only train; they never enter validation.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from finetune.datasets.records import Example
from finetune.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixSpec:
    """A ``FILE:RATIO`` mix-in: the file and the share of the training set it should make up."""

    path: Path
    ratio: float


def parse_mix(spec: str) -> MixSpec:
    """Parse ``FILE:RATIO`` (ratio in (0, 1)); the last colon separates, so paths may contain colons."""
    path, sep, ratio = str(spec).rpartition(":")
    try:
        value = float(ratio)
    except ValueError:
        value = None
    if not sep or not path or value is None or not 0 < value < 1:
        raise DatasetError(f"--mix {spec!r}: expected FILE:RATIO with a ratio between 0 and 1, e.g. general.jsonl:0.2")
    return MixSpec(Path(path), value)


def split_examples(examples: list[Example], val_ratio: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded (train, validation) split holding out ``val_ratio`` of the examples (at least one)."""
    if not 0 <= val_ratio < 1:
        raise DatasetError(f"val_ratio {val_ratio} must be at least 0 and below 1")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    if val_ratio == 0:
        return shuffled, []
    n_val = max(1, round(len(shuffled) * val_ratio))
    if n_val >= len(shuffled):
        raise DatasetError(f"{len(shuffled)} examples are too few to hold out {val_ratio:.0%} for validation; "
                           "add examples, lower --val-ratio, or pass --val-data")
    return shuffled[n_val:], shuffled[:n_val]


def mix_examples(train: list[Example], mixes: list[tuple[MixSpec, list[Example]]], seed: int) -> tuple[list[Example], dict]:
    """Add each mix file's share to ``train``; returns the mixed list and {file: examples added}."""
    total_ratio = sum(spec.ratio for spec, _ in mixes)
    if total_ratio >= 1:
        raise DatasetError(f"--mix ratios add up to {total_ratio:.2f}; together they must stay below 1")
    rng = random.Random(seed + 1)
    task_share = 1 - total_ratio
    mixed, added = list(train), {}
    for spec, pool in mixes:
        want = round(len(train) * spec.ratio / task_share)
        if want > len(pool):
            log.warning("--mix %s: wanted %d examples, the file has %d; using all of them", spec.path, want, len(pool))
            want = len(pool)
        mixed += rng.sample(pool, want)
        added[str(spec.path)] = want
    rng.shuffle(mixed)
    return mixed, added
