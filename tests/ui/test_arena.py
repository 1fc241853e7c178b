"""The arena's vote store and ratings, on hand-made battles with known answers."""

from __future__ import annotations

import math
import random
import sqlite3

import numpy as np
import pytest

from ui.arena import ArenaConfig, ArenaStore, Battle, fit_bradley_terry, leaderboard, pick_pair, wilson_interval


def test_vote_is_stored_in_sqlite_and_read_back(tmp_path):
    store = ArenaStore(tmp_path / "arena.sqlite")
    store.record_vote("q?", ArenaConfig("rag"), ArenaConfig("hybrid", "demo"), "a", "b", "right", kb="default")
    rows = sqlite3.connect(tmp_path / "arena.sqlite").execute(
        "SELECT left_config, right_config, vote, kb FROM battles").fetchall()
    assert rows == [("rag", "hybrid:demo", "right", "default")]
    assert [b.vote for b in store.battles(kb="default")] == ["right"]
    assert store.battles(kb="other") == []


def test_unknown_vote_is_refused(tmp_path):
    store = ArenaStore(tmp_path / "arena.sqlite")
    with pytest.raises(ValueError, match="vote must be one of"):
        store.record_vote("q", "rag", "prompt", "a", "b", "maybe")


def test_config_label_round_trips():
    assert ArenaConfig.parse(ArenaConfig("hybrid", "grounded").label) == ArenaConfig("hybrid", "grounded")
    assert ArenaConfig.parse("rag") == ArenaConfig("rag", None)


def test_pick_pair_returns_two_different_configs_in_both_orders():
    configs = [ArenaConfig("rag"), ArenaConfig("prompt")]
    rng = random.Random(1)
    orders = {tuple(c.label for c in pick_pair(configs, rng)) for _ in range(50)}
    assert orders == {("rag", "prompt"), ("prompt", "rag")}


def test_pick_pair_needs_two_configs():
    with pytest.raises(ValueError, match="at least two"):
        pick_pair([ArenaConfig("rag"), ArenaConfig("rag")])


def test_bradley_terry_recovers_the_odds_of_a_two_player_record():
    wins = np.array([[0.0, 8.0], [2.0, 0.0]])  # A beat B 8 times, B beat A twice
    theta = fit_bradley_terry(wins, prior=0.0)
    assert theta[0] - theta[1] == pytest.approx(math.log(4), abs=1e-6)
    assert theta.mean() == pytest.approx(0.0, abs=1e-9)


def test_bradley_terry_orders_a_transitive_three_player_field():
    # A > B > C, each pair 10 games at 70/30
    wins = np.array([[0, 7, 7], [3, 0, 7], [3, 3, 0]], dtype=float)
    theta = fit_bradley_terry(wins)
    assert theta[0] > theta[1] > theta[2]


def test_unbeaten_contestant_gets_a_finite_rating():
    theta = fit_bradley_terry(np.array([[0.0, 5.0], [0.0, 0.0]]))
    assert np.all(np.isfinite(theta)) and theta[0] > theta[1]


def test_wilson_interval_matches_the_textbook_value():
    # 8 of 10: Wilson 95% interval is (0.4902, 0.9433)
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


def test_leaderboard_ranks_the_winner_first_with_intervals_around_it():
    battles = [Battle("hybrid:demo", "rag", "left")] * 12 + [Battle("rag", "hybrid:demo", "left")] * 3 \
        + [Battle("rag", "prompt", "left")] * 10 + [Battle("prompt", "hybrid:demo", "tie")] * 2
    board = leaderboard(battles, resamples=100)
    assert [r.config for r in board] == ["hybrid:demo", "rag", "prompt"]
    for r in board:
        assert r.rating_low <= r.rating <= r.rating_high
        assert r.win_low <= r.win_rate <= r.win_high
    top = board[0]
    assert (top.wins, top.losses, top.ties, top.battles) == (12, 3, 2, 17)
    assert top.win_rate == pytest.approx(13 / 17)


def test_both_bad_counts_as_a_tie_for_ratings_and_is_reported():
    board = leaderboard([Battle("rag", "prompt", "both_bad")] * 4, resamples=20)
    assert board[0].rating == pytest.approx(board[1].rating)
    assert all(r.both_bad == 4 and r.win_rate == 0.5 for r in board)
