"""The blind A/B arena: two answers from two hidden configurations, a vote, and ratings.

Votes live in ``<workspace>/arena.sqlite`` (one ``battles`` table any SQLite client can read).
Ratings are a Bradley-Terry fit (ties and "both bad" count as half a win each, as LMSYS's
Chatbot Arena does), reported on the Elo scale with 95% bootstrap intervals over battles,
beside the raw win rate with its Wilson interval.
"""

from __future__ import annotations

import math
import random
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

VOTES = ("left", "right", "tie", "both_bad")
ELO_SCALE = 400 / math.log(10)  # a 400-point gap means 10:1 odds, as in chess
ELO_BASE = 1000.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS battles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    kb TEXT NOT NULL,
    question TEXT NOT NULL,
    left_config TEXT NOT NULL,
    right_config TEXT NOT NULL,
    left_answer TEXT NOT NULL,
    right_answer TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('left', 'right', 'tie', 'both_bad'))
);
"""


@dataclass(frozen=True, order=True)
class ArenaConfig:
    """One contestant: an answer mode and, for tuned/hybrid, an adapter."""

    mode: str
    adapter: str | None = None

    @property
    def label(self) -> str:
        """``mode`` or ``mode:adapter``, the form stored in the database."""
        return f"{self.mode}:{self.adapter}" if self.adapter else self.mode

    @classmethod
    def parse(cls, label: str) -> "ArenaConfig":
        """The inverse of ``label``."""
        mode, _, adapter = label.partition(":")
        return cls(mode, adapter or None)


@dataclass(frozen=True)
class Battle:
    """One vote between two answers to the same question."""

    left: str
    right: str
    vote: str
    question: str = ""
    kb: str = ""
    created_at: str = ""
    id: int | None = None


@dataclass(frozen=True)
class Rating:
    """A contestant's standing: Bradley-Terry rating (Elo scale) and raw win rate, each with a 95% interval."""

    config: str
    rating: float
    rating_low: float
    rating_high: float
    win_rate: float  # wins + half the ties and both-bad votes, over battles
    win_low: float
    win_high: float
    battles: int
    wins: int
    losses: int
    ties: int
    both_bad: int

    def to_dict(self) -> dict:
        """JSON-ready form (rounded)."""
        return {"config": self.config, "rating": round(self.rating, 1),
                "rating_ci95": [round(self.rating_low, 1), round(self.rating_high, 1)],
                "win_rate": round(self.win_rate, 4), "win_rate_ci95": [round(self.win_low, 4), round(self.win_high, 4)],
                "battles": self.battles, "wins": self.wins, "losses": self.losses, "ties": self.ties,
                "both_bad": self.both_bad}


class ArenaStore:
    """The battles table in ``path`` (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        return db

    def record_vote(self, question: str, left: ArenaConfig | str, right: ArenaConfig | str,
                    left_answer: str, right_answer: str, vote: str, kb: str = "") -> Battle:
        """Store one vote (``left``, ``right``, ``tie`` or ``both_bad``) and return it."""
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
        left_label = left.label if isinstance(left, ArenaConfig) else left
        right_label = right.label if isinstance(right, ArenaConfig) else right
        if left_label == right_label:
            raise ValueError(f"a battle needs two different configurations, got {left_label!r} twice")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with closing(self._connect()) as db, db:
            cur = db.execute(
                "INSERT INTO battles (created_at, kb, question, left_config, right_config, left_answer,"
                " right_answer, vote)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now, kb, question, left_label, right_label, left_answer, right_answer, vote))
            return Battle(left_label, right_label, vote, question, kb, now, cur.lastrowid)

    def battles(self, kb: str | None = None) -> list[Battle]:
        """Every stored battle, oldest first (only those on ``kb`` if given)."""
        sql = "SELECT * FROM battles" + (" WHERE kb = ?" if kb is not None else "") + " ORDER BY id"
        with closing(self._connect()) as db:
            rows = db.execute(sql, (kb,) if kb is not None else ()).fetchall()
        return [Battle(r["left_config"], r["right_config"], r["vote"], r["question"], r["kb"], r["created_at"], r["id"])
                for r in rows]


def pick_pair(configs: list[ArenaConfig], rng: random.Random | None = None) -> tuple[ArenaConfig, ArenaConfig]:
    """Two different configurations chosen at random, in random left/right order."""
    unique = sorted(set(configs))
    if len(unique) < 2:
        raise ValueError("the arena needs at least two configurations (modes or adapters) to compare")
    left, right = (rng or random.SystemRandom()).sample(unique, 2)
    return left, right


def _score_matrix(battles: list[Battle], index: dict[str, int]) -> np.ndarray:
    """wins[i, j]: how often i beat j, ties and both-bad counting half to each side."""
    wins = np.zeros((len(index), len(index)))
    for b in battles:
        i, j = index[b.left], index[b.right]
        if b.vote == "left":
            wins[i, j] += 1
        elif b.vote == "right":
            wins[j, i] += 1
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    return wins


def fit_bradley_terry(wins: np.ndarray, prior: float = 0.1, iterations: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Log-strengths (mean 0) maximizing the Bradley-Terry likelihood of the ``wins`` matrix.

    Hunter's (2004) MM updates; ``prior`` adds that many virtual ties between every pair that
    met, so an unbeaten contestant gets a large but finite rating instead of infinity.
    """
    n = wins.shape[0]
    games = wins + wins.T
    met = games > 0
    wins = wins + prior / 2 * met
    games = wins + wins.T
    total_wins = wins.sum(axis=1)
    strength = np.ones(n)
    for _ in range(iterations):
        denom = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        updated = np.where(denom > 0, total_wins / np.where(denom > 0, denom, 1), strength)
        updated = np.maximum(updated, 1e-12)
        updated /= np.exp(np.log(updated).mean())
        if np.max(np.abs(np.log(updated) - np.log(strength))) < tol:
            strength = updated
            break
        strength = updated
    return np.log(strength)


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% by default); (0, 1) when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def leaderboard(battles: list[Battle], resamples: int = 200, seed: int = 0) -> list[Rating]:
    """Ratings for every configuration in ``battles``, best first."""
    if not battles:
        return []
    names = sorted({b.left for b in battles} | {b.right for b in battles})
    index = {name: i for i, name in enumerate(names)}
    theta = fit_bradley_terry(_score_matrix(battles, index))
    rng = np.random.default_rng(seed)
    boot = np.empty((resamples, len(names)))
    for r in range(resamples):
        sample = [battles[i] for i in rng.integers(0, len(battles), len(battles))]
        boot[r] = fit_bradley_terry(_score_matrix(sample, index))
        # a contestant absent from a resample keeps the field's mean (0), which widens its interval as it should
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    ratings = []
    for name, i in index.items():
        mine = [b for b in battles if name in (b.left, b.right)]
        won = sum(1 for b in mine if (b.vote == "left") == (b.left == name) and b.vote in ("left", "right"))
        ties = sum(1 for b in mine if b.vote == "tie")
        bad = sum(1 for b in mine if b.vote == "both_bad")
        lost = len(mine) - won - ties - bad
        score = won + 0.5 * (ties + bad)
        w_low, w_high = wilson_interval(score, len(mine))
        ratings.append(Rating(name, ELO_BASE + ELO_SCALE * theta[i], ELO_BASE + ELO_SCALE * low[i],
                              ELO_BASE + ELO_SCALE * high[i], score / len(mine), w_low, w_high,
                              len(mine), won, lost, ties, bad))
    return sorted(ratings, key=lambda r: -r.rating)
