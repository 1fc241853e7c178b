"""``ragtune adapt``: self-check questions held out of training, the gate, and the KB's default adapter."""

from __future__ import annotations

import argparse
import json

import pytest

from evaluation.adaptation import AdaptSettings, _decide, adapt_kb, self_check
from finetune.adapters import kb_default_adapter, set_kb_default
from finetune.grounding import build_grounding_set, check_questions
from finetune.training import run_dir_for

# Two domains, so the questions the self-check makes are not tied to one kind of text.
DOCS = {
    "bakery/opening.md": "# Opening\n\nThe Linden Street bakery opened on 3 May 2004 with four ovens. "
                         "Its founder Marta Holm trained in Lyon for six years before that.",
    "bakery/bread.md": "# Bread\n\nThe rye loaf weighs 900 grams and costs €4.20 at the counter. "
                       "Dough for it rests for 18 hours in the cold room.",
    "bakery/staff.md": "# Staff\n\nThe head baker Jonas Berg starts his shift at 03:30 every weekday. "
                       "The shop employs 14 people in the summer season.",
    "bakery/orders.md": "# Orders\n\nWedding cakes must be ordered 21 days ahead of the event. "
                        "Deliveries within the city cost €12 per order.",
    "bakery/history.md": "# History\n\nIn 2011 the bakery won the Northern Bread Award for its sourdough. "
                         "A second shop opened in Harbour Square in March 2016.",
    "lib/install.md": "# Installing\n\nVersion 2.7 of the Quarrel library needs at least 512 megabytes of memory. "
                      "The installer writes its log to a file called quarrel-setup.log in the home folder.",
    "lib/config.md": "# Configuration\n\nThe cache keeps entries for 300 seconds unless the timeout is changed. "
                     "Each worker opens at most 16 connections to the database.",
    "lib/limits.md": "# Limits\n\nA single request body may hold up to 64 kilobytes of text. "
                     "Batch jobs stop after 45 minutes of running time.",
    "lib/release.md": "# Releases\n\nThe first public release appeared on 9 October 2019. "
                      "Its lead maintainer Priya Raman reviews every change to the parser.",
    "lib/errors.md": "# Errors\n\nError code QR-404 means that the schema file was not found. "
                     "The retry loop waits 250 milliseconds between two attempts.",
}


@pytest.fixture
def adapt_ws(tmp_path, eval_parrot_path, tiny_embedder_path):
    """A workspace with the parrot generator and KB 'docs' holding DOCS (two domains)."""
    import yaml

    from ingest.pipeline import ingest_paths
    from ragtune.workspace import Workspace
    from retrieval.knowledge_base import KnowledgeBase

    ws = Workspace.open(tmp_path / "home")
    ws.config_path.write_text(yaml.safe_dump({
        "models": {"generator": str(eval_parrot_path), "embedder": tiny_embedder_path, "dtype": "float32"},
        "generation": {"min_score": -1.0, "max_tokens": 12, "k": 2},
    }))
    for name, text in DOCS.items():
        path = tmp_path / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    with KnowledgeBase.open(ws.kb_path("docs"), embedder=tiny_embedder_path, create=True) as kb:
        assert not ingest_paths(kb, [tmp_path / "docs"], progress=False).failed
    return ws


def test_check_questions_and_their_answering_sentences_never_enter_the_grounding_set(adapt_ws):
    from retrieval.knowledge_base import KnowledgeBase

    with KnowledgeBase.open(adapt_ws.kb_path("docs")) as kb:
        checks = check_questions(kb, 6)
        examples = build_grounding_set(kb, 40, exclude=checks, hold_out_answers=True, focus_sentences=0)
    assert len(checks) == 6
    assert {c["sources"][0].split("/docs/")[1].split("/")[0] for c in checks} == {"bakery", "lib"}
    for check in checks:
        assert check["question"].endswith("?") and check["answers"][0] not in check["question"]
        for example in examples:
            assert check["answers"][0] not in example.answer


def test_an_adapter_that_does_not_beat_rag_is_kept_but_not_made_the_default(adapt_ws):
    settings = AdaptSettings(examples=16, check_questions=10, max_tokens=12, batch_size=8)
    report = adapt_kb(adapt_ws, "docs", settings=settings, progress=False)

    assert report.adapter == "docs" and (adapt_ws.adapters_dir / "docs").is_dir()
    assert report.check.questions == 10
    assert not report.accepted and report.default_adapter is None
    assert "RAG-only" in report.reason
    assert kb_default_adapter(adapt_ws, "docs") is None
    saved = json.loads((run_dir_for(adapt_ws, "docs") / "adapt.json").read_text())
    assert saved["accepted"] is False and saved["check"]["ci95"] == list(report.check.ci95)
    assert saved["retrieval"] is None  # retrieval tuning is opt-in


def test_adapting_twice_under_one_name_is_refused_before_any_work(adapt_ws, eval_parrot_path, adapter_maker):
    from evaluation.errors import EvaluationError
    adapter_maker(adapt_ws, eval_parrot_path, "docs")
    with pytest.raises(EvaluationError, match="already exists.*adapters delete docs"):
        adapt_kb(adapt_ws, "docs", settings=AdaptSettings(examples=16, check_questions=10), progress=False)


def _summary(rag: float, hybrid: float, lo: float, hi: float) -> dict:
    return {"modes": {"rag": {"correctness": rag, "false_abstention_rate": 0.1},
                      "hybrid": {"correctness": hybrid, "false_abstention_rate": 0.05}},
            "pairs": {"hybrid-vs-rag": {"delta": hybrid - rag, "ci95": [lo, hi], "p_raw": 0.01, "n": 50,
                                        "b_better": 12, "a_better": 2}}}


def test_the_gate_makes_the_adapter_default_only_when_the_ci_is_above_zero(adapt_ws, eval_parrot_path, adapter_maker):
    adapter_maker(adapt_ws, eval_parrot_path, "docs")
    refused = self_check(_summary(0.4, 0.5, -0.02, 0.22))
    assert not refused.wins
    assert _decide(adapt_ws, "docs", "docs", refused).startswith("not kept")
    assert kb_default_adapter(adapt_ws, "docs") is None

    won = self_check(_summary(0.4, 0.6, 0.08, 0.32))
    assert won.wins and won.hybrid_better == 12 and won.rag_better == 2
    assert _decide(adapt_ws, "docs", "docs", won).startswith("kept")
    assert kb_default_adapter(adapt_ws, "docs") == "docs"


def test_without_adapter_flag_the_kb_default_adapter_answers_in_hybrid(adapt_ws, eval_parrot_path, adapter_maker):
    from assistant.cli_args import resolve_mode
    args = argparse.Namespace(kb="docs", mode=None, adapter=None)
    assert resolve_mode(adapt_ws, args) == ("rag", None)
    adapter_maker(adapt_ws, eval_parrot_path, "docs-own")
    set_kb_default(adapt_ws, "docs", "docs-own", {"delta": 0.2})
    assert resolve_mode(adapt_ws, args) == ("hybrid", "docs-own")
    assert resolve_mode(adapt_ws, argparse.Namespace(kb="docs", mode="rag", adapter=None)) == ("rag", None)
    assert resolve_mode(adapt_ws, argparse.Namespace(kb="other", mode=None, adapter=None)) == ("rag", None)
    # a deleted adapter is no default
    import shutil

    shutil.rmtree(adapt_ws.adapters_dir / "docs-own")
    assert resolve_mode(adapt_ws, args) == ("rag", None)


def test_cli_adapt_of_a_missing_kb_is_one_line_and_exit_one(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ragtune", "adapt", "nosuch", "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: no knowledge base named 'nosuch'; create it with: ragtune ingest DOCS --kb nosuch"


def test_retrieval_only_tunes_the_query_side_and_trains_no_adapter(adapt_ws):
    report = adapt_kb(adapt_ws, "docs", settings=AdaptSettings(check_questions=10), progress=False,
                      retrieval_only=True)
    assert report.adapter is None and report.check is None and not report.accepted
    assert report.retrieval.pairs + report.retrieval.held_out > 10
    assert not (adapt_ws.adapters_dir / "docs").exists()
    kept = (adapt_ws.kb_path("docs") / "query_adapter.npy").exists()
    assert kept == report.retrieval.kept
