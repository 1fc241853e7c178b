"""The harness end to end on the tiny parrot model: records, summary, paired tests, reports, CLI."""

import json
import os
import subprocess
import sys

import pytest

from evaluation.errors import EvaluationError
from evaluation.harness import EvalSettings, parse_modes, run_evaluation
from ragtune.workspace import Workspace

FAST = dict(resamples=200)
SUMMARY_MODE_KEYS = {"correctness", "correctness_ci95", "token_f1", "rouge_l", "retrieval_hit_at_k", "mrr",
                     "citation_precision", "citation_recall", "groundedness", "abstention_accuracy", "style",
                     "latency_p50_s", "n"}


@pytest.fixture(scope="module")
def run(eval_home, tmp_path_factory):
    """One evaluation of the four modes with adapter 'tiny' (shared by the tests that read it)."""
    ws = Workspace.open(eval_home)
    return run_evaluation(ws, eval_home / "qa" / "qa.jsonl", adapter="tiny", out=tmp_path_factory.mktemp("run"),
                          settings=EvalSettings(**FAST), progress=False)


def test_every_question_is_answered_in_every_mode_and_recorded(run):
    lines = [json.loads(x) for x in (run.out_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 4
    assert {r["mode"] for r in lines} == {"prompt", "rag", "tuned", "hybrid"}
    rag = next(r for r in lines if r["mode"] == "rag" and r["id"] == "q1")
    assert rag["answer"] == "The ferry leaves at seven [1]."
    assert len(rag["context"]) == 2 and rag["citations"][0]["n"] == 1
    assert rag["latency_s"] > 0 and rag["tokens"] > 0
    prompt = next(r for r in lines if r["mode"] == "prompt" and r["id"] == "q1")
    assert prompt["context"] == [] and prompt["dropped_citations"] == [1]


def test_scores_follow_the_answers(run):
    by = {(r["mode"], r["id"]): r["scores"] for r in run.records}
    assert all(by[(m, "q1")]["correctness"] == 1.0 for m in ("prompt", "rag", "tuned", "hybrid"))
    assert all(by[(m, "q2")]["correctness"] == 0.0 for m in ("prompt", "rag"))
    assert by[("rag", "q3")]["abstention_accuracy"] == 0.0  # the parrot never declines
    assert by[("prompt", "q1")]["retrieval_hit_at_k"] is None and by[("rag", "q1")]["retrieval_hit_at_k"] is not None
    assert by[("rag", "q4")]["style"] == 1.0 and by[("prompt", "q4")]["style"] == 0.0  # prompt's [1] was dropped


def test_summary_has_the_issue_shape(run):
    summary = json.loads((run.out_dir / "summary.json").read_text())
    assert set(summary["modes"]) == {"prompt", "rag", "tuned", "hybrid"}
    for row in summary["modes"].values():
        assert SUMMARY_MODE_KEYS <= set(row)
        assert row["n"] == 4 and row["correctness"] == 0.25
    assert set(summary["pairs"]) == {"rag-vs-prompt", "tuned-vs-prompt", "hybrid-vs-prompt", "tuned-vs-rag",
                                     "hybrid-vs-rag", "hybrid-vs-tuned"}
    pair = summary["pairs"]["hybrid-vs-rag"]
    assert {"delta", "ci95", "p_value"} <= set(pair) and pair["delta"] == 0.0 and pair["p_value"] == 1.0
    assert summary["modes"]["rag"]["groups"]["freshness"] == {"n": 1, "correct": 0, "correctness": 0.0}


def test_reports_are_written(run):
    for name in ("report.md", "report.html", "metrics.png", "latency.png", "settings.json"):
        assert (run.out_dir / name).exists(), name
    html = (run.out_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "no significant difference between hybrid and rag" in html


def test_modes_needing_an_adapter_are_skipped_with_a_note(eval_home, tmp_path):
    out = run_evaluation(Workspace.open(eval_home), eval_home / "qa" / "qa.jsonl", out=tmp_path,
                         settings=EvalSettings(modes=["prompt", "tuned"], limit=1, **FAST), progress=False)
    assert list(out.summary["modes"]) == ["prompt"]
    assert "needs an adapter" in out.summary["skipped"]["tuned"]


def test_pinned_adapters_get_their_own_column():
    specs, skipped = parse_modes(["rag", "hybrid", "hybrid:grounded"], "demo")
    assert [(s.label, s.mode, s.adapter) for s in specs] == [("rag", "rag", None), ("hybrid", "hybrid", "demo"),
                                                             ("hybrid:grounded", "hybrid", "grounded")]
    with pytest.raises(EvaluationError, match="unknown mode 'fast'"):
        parse_modes(["fast"], None)
    with pytest.raises(EvaluationError, match="no mode left"):
        parse_modes(["tuned"], None)


def test_unknown_adapter_is_an_error_before_answering(eval_home, tmp_path):
    with pytest.raises(EvaluationError, match="no adapter named 'nope'.*existing adapters: tiny"):
        run_evaluation(Workspace.open(eval_home), eval_home / "qa" / "qa.jsonl", adapter="nope", out=tmp_path,
                       settings=EvalSettings(**FAST), progress=False)


def test_robustness_curves_cover_k_and_distractors_per_adapter(eval_home, tmp_path):
    out = run_evaluation(Workspace.open(eval_home), eval_home / "qa" / "qa.jsonl", adapter="tiny", out=tmp_path,
                         settings=EvalSettings(modes=["rag", "hybrid"], limit=2, robustness=True, robustness_k=[0, 2],
                                               robustness_distractors=[0, 1], **FAST), progress=False)
    curves = json.loads((tmp_path / "robustness.json").read_text())
    assert set(curves["k"]) == {"rag", "hybrid:tiny"} and set(curves["distractors"]) == {"rag", "hybrid:tiny"}
    assert [p["x"] for p in curves["k"]["rag"]] == [0, 2]
    assert curves["k"]["rag"][0]["n"] == 2  # the answerable ones of the first two questions
    assert (tmp_path / "robustness.png").exists() and out.robustness == curves


def test_cli_eval_prints_json_summary(eval_home, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ragtune", "eval", str(eval_home / "qa" / "qa.jsonl"), "--home",
                           str(eval_home), "--modes", "prompt,rag", "--limit", "2", "--out", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["modes"]) == {"prompt", "rag"} and summary["out"] == str(tmp_path)


def test_cli_bad_qa_file_is_one_line_and_exit_one(tmp_path):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"id": "q1", "question": "Why?"}\n')
    proc = subprocess.run([sys.executable, "-m", "ragtune", "eval", str(bad), "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {bad}:1: field 'answers' is missing; give a list of strings"
