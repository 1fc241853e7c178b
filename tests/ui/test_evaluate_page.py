"""The Evaluate & A/B page (AppTest): the harness in the background and its report; the blind arena."""

from __future__ import annotations

import json
import sqlite3
import time

from ui.arena import ArenaStore
from ui.jobs import list_jobs

QA = [{"id": "open", "question": "When did the Harbour office open?", "answers": ["1998"], "sources": ["office.md"]},
      {"id": "hours", "question": "When is the office open?", "answers": ["weekdays"], "sources": ["office.md"]},
      {"id": "moon", "question": "Who owns the moon base?", "answers": [], "answerable": False}]


def _errors(at) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _wait_for_job(ws, seconds: float = 300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        job = list_jobs(ws, kind="eval")[0]
        if job.status != "running":
            return job
        time.sleep(0.5)
    raise AssertionError(f"evaluation still running after {seconds} s:\n{job.log_tail()}")


def test_evaluation_runs_in_the_background_and_its_report_is_shown(ui_workspace, office_kb, open_page, tmp_path):
    config = ui_workspace.config()
    config["eval"] = {"resamples": 200}
    import yaml

    ui_workspace.config_path.write_text(yaml.safe_dump(config))
    at = open_page("evaluate")
    at.file_uploader(key="eval_upload").set_value(
        ("office qa.jsonl", "\n".join(json.dumps(q) for q in QA).encode(), "application/json")).run()
    at.selectbox(key="eval_qa").select("uploaded: office_qa.jsonl")
    at.multiselect(key="eval_modes").set_value(["prompt", "rag"])
    at.get("form_submit_button")[0].click().run()
    assert not _errors(at)
    job = _wait_for_job(ui_workspace)
    assert job.status == "finished", job.log_tail()
    assert "--modes prompt,rag" in " ".join(job.command)
    at.run()
    assert not _errors(at)
    table = at.dataframe[0].value
    assert list(table["mode"]) == ["prompt", "rag"] and set(table["n"]) == {3}
    assert any("rag" in m.value and "prompt" in m.value and "Holm" in m.value for m in at.markdown)
    assert len(at.get("image")) >= 2, "the metric and latency charts are shown"


def test_arena_vote_is_stored_and_reveals_both_configurations(ui_workspace, office_kb, open_page):
    at = open_page("evaluate")
    at.text_input(key="arena_question").input("When did the Harbour office open?")
    at.get("form_submit_button")[1].click().run()
    assert not _errors(at)
    answers = [m.value for m in at.markdown if m.value.startswith("**Answer ")]
    assert answers == ["**Answer A**", "**Answer B**"], "labels stay hidden before the vote"
    at.button(key="arena_vote_left").click().run()
    battles = ArenaStore(ui_workspace.home / "arena.sqlite").battles()
    assert len(battles) == 1 and battles[0].vote == "left" and {battles[0].left, battles[0].right} == {"prompt", "rag"}
    reveal = " ".join(s.value for s in at.success)
    assert f"A was `{battles[0].left}`" in reveal and f"B was `{battles[0].right}`" in reveal
    board = at.dataframe[-1].value
    assert list(board["configuration"]) == [battles[0].left, battles[0].right]


def test_leaderboard_shows_win_rates_with_intervals(ui_workspace, office_kb, open_page):
    store = ArenaStore(ui_workspace.home / "arena.sqlite")
    for _ in range(6):
        store.record_vote("q", "rag", "prompt", "a", "b", "left", kb="default")
    store.record_vote("q", "rag", "prompt", "a", "b", "both_bad", kb="default")
    at = open_page("evaluate")
    board = at.dataframe[-1].value
    top = board.iloc[0]
    assert top["configuration"] == "rag" and top["battles"] == 7 and top["both bad"] == 1
    low, high = (float(x) for x in top["win rate 95% CI"].split("–"))
    assert low < top["win rate"] < high
    count = sqlite3.connect(ui_workspace.home / "arena.sqlite").execute("SELECT COUNT(*) FROM battles").fetchone()
    assert count == (7,)
