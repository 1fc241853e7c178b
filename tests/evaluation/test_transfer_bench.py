"""bench/transfer.py: its flags, its figures, and a whole run on the second domain with the tiny models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def transfer():
    spec = importlib.util.spec_from_file_location("bench_transfer", ROOT / "bench" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_answer_modes_without_a_workspace_are_refused_in_one_line(transfer, capsys):
    with pytest.raises(SystemExit) as exc:
        transfer.parse_args(["--modes", "rag,hybrid"])
    assert exc.value.code == 2
    assert "--workspace" in capsys.readouterr().err.strip().splitlines()[-1]


def test_flags_parse_into_modes_splits_and_adapter(transfer, tmp_path):
    args = transfer.parse_args(["--split", "both", "--modes", "rag, hybrid:grounded", "--adapter", "sqlite",
                                "--workspace", str(tmp_path)])
    assert args.modes == ["rag", "hybrid:grounded"] and args.adapter == "sqlite"
    assert transfer.splits_of(args.split) == ["dev", "test"]
    assert transfer.splits_of("test") == ["test"]


def test_answers_leaking_prompt_markup_are_counted_per_mode(transfer):
    summary = {"modes": {"rag": {"n": 3, "correctness": 0.5, "correctness_ci95": [0.1, 0.9], "false_abstention_rate": 0.0,
                                 "ci95": {"false_abstention_rate": [0.0, 0.0]}}}, "pairs": {}}
    records = [{"mode": "rag", "answer": 'The document n="2" title="limits" says 64 [2].'},
               {"mode": "rag", "answer": "<document n=1>64</document>"},
               {"mode": "rag", "answer": "SQLite joins at most 64 tables [1]."}]
    figures = transfer.answer_figures(summary, records)
    assert figures["modes"]["rag"]["markup_answers"] == 2


def test_a_run_with_the_tiny_models_reports_retrieval_answers_and_targets(transfer, tmp_path, eval_parrot_path,
                                                                          tiny_embedder_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(yaml.safe_dump({
        "models": {"generator": str(eval_parrot_path), "embedder": tiny_embedder_path, "dtype": "float32"},
        "generation": {"min_score": -1.0, "max_tokens": 8, "k": 2}}))
    out = tmp_path / "transfer.json"
    assert transfer.main(["--split", "dev", "--workspace", str(home), "--modes", "rag", "--limit", "2",
                          "--out", str(out), "--quiet"]) == 0
    results = json.loads(out.read_text())
    dev = results["splits"]["dev"]
    assert results["kb"]["documents"] == 52
    assert set(dev["retrieval"]["modes"]) == {"dense", "bm25", "hybrid"}
    assert dev["retrieval"]["questions"] == 28  # dev's answerable questions
    rag = dev["answers"]["modes"]["rag"]
    assert rag["n"] == 2 and isinstance(rag["markup_answers"], int)
    assert Path(dev["answers"]["run"], "report.html").is_file()  # the harness's own report
    assert any("rank-1" in t["target"] for t in results["targets"])
