"""Verdicts in words, the disagreement list and the report files, from hand-made summaries."""

import json

from evaluation.report import disagreements, render_html, summary_table, verdict, write_reports


def _row(mode, correctness, ci):
    return {"mode": mode, "adapter": None, "n": 4, "correctness": correctness, "correctness_ci95": ci,
            "token_f1": 0.5, "rouge_l": 0.4, "retrieval_hit_at_k": None, "mrr": None, "citation_precision": None,
            "citation_recall": None, "groundedness": None, "abstention_accuracy": 0.75, "style": None,
            "latency_p50_s": 1.25, "ci95": {"correctness": ci, "token_f1": [0.3, 0.7]}, "groups": {}}


SUMMARY = {
    "qa_file": "qa.jsonl", "kb": "default", "generator": "tiny", "k": 3, "n_questions": 4,
    "modes": {"rag": _row("rag", 0.5, [0.0, 1.0]), "hybrid": _row("hybrid", 0.75, [0.25, 1.0])},
    "pairs": {"hybrid-vs-rag": {"delta": 0.18, "ci95": [0.09, 0.27], "p_value": 0.003, "test": "mcnemar-exact", "n": 40,
                                "metrics": {"token_f1": {"delta": -0.1, "ci95": [-0.2, -0.05], "p_value": 0.01,
                                                         "test": "paired-bootstrap", "n": 40}}}},
}
RECORDS = [
    {"id": "q1", "question": "Who?", "mode": "rag", "answer": "Nobody.", "scores": {"correctness": 0.0}, "latency_s": 1.0},
    {"id": "q1", "question": "Who?", "mode": "hybrid", "answer": "Maria [1].", "scores": {"correctness": 1.0}, "latency_s": 1.5},
    {"id": "q2", "question": "When?", "mode": "rag", "answer": "2019 [1].", "scores": {"correctness": 1.0}, "latency_s": 1.0},
    {"id": "q2", "question": "When?", "mode": "hybrid", "answer": "2019 [2].", "scores": {"correctness": 1.0}, "latency_s": 2.0},
]


def test_a_significant_gain_reads_as_a_win_with_its_interval():
    line = verdict("hybrid-vs-rag", "correctness", SUMMARY["pairs"]["hybrid-vs-rag"])
    assert line.startswith("hybrid beats rag on correctness by +0.18, 95% CI [0.09, 0.27]")


def test_a_significant_loss_names_the_other_mode_as_winner():
    line = verdict("hybrid-vs-rag", "token_f1", SUMMARY["pairs"]["hybrid-vs-rag"]["metrics"]["token_f1"])
    assert line.startswith("rag beats hybrid on token F1 by +0.10, 95% CI [0.05, 0.20]")


def test_a_lower_error_rate_wins_and_reads_from_the_winners_side():
    line = verdict("hybrid-vs-rag", "false_abstention_rate", {"delta": -0.2, "ci95": [-0.3, -0.1], "p_value": 0.01,
                                                              "test": "paired-bootstrap", "n": 40})
    assert line.startswith("hybrid beats rag on")
    assert "by -0.20, 95% CI [-0.30, -0.10]" in line


def test_a_non_significant_difference_says_so():
    line = verdict("tuned-vs-prompt", "correctness", {"delta": 0.05, "ci95": [-0.05, 0.15], "p_value": 0.4, "n": 20})
    assert line.startswith("no significant difference between tuned and prompt on correctness")


def test_an_interval_excluding_zero_without_a_corrected_significance_says_both():
    line = verdict("hybrid-vs-rag", "correctness", {"delta": 0.15, "ci95": [0.03, 0.27], "p_value": 0.124,
                                                    "test": "mcnemar-exact", "n": 66})
    assert line.startswith("hybrid leads rag on correctness by +0.15, 95% CI [0.03, 0.27] excluding zero, but not "
                           "significantly after Holm's correction")
    assert "McNemar p=0.124" in line


def test_disagreements_list_only_questions_where_modes_differ():
    rows = disagreements(RECORDS)
    assert [r["id"] for r in rows] == ["q1"]
    assert rows[0]["modes"]["hybrid"]["correct"] == 1.0


def test_table_has_one_row_per_mode_with_the_interval():
    table = summary_table(SUMMARY)
    assert table.splitlines()[2].startswith("rag")
    assert "[0.25, 1.00]" in table


def test_reports_are_written_and_the_html_is_self_contained(tmp_path):
    files = write_reports(tmp_path, SUMMARY, RECORDS)
    assert {"report.md", "report.html", "metrics.png", "latency.png"} <= set(files)
    assert files["metrics.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = files["report.html"].read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "src='http" not in html and 'src="http' not in html
    md = files["report.md"].read_text()
    assert "hybrid beats rag on correctness by +0.18" in md and "| q1 |" in md


def test_robustness_chart_is_included_when_measured(tmp_path):
    curve = [{"x": 0, "correctness": 0.2, "ci95": [0.0, 0.4], "n": 5}, {"x": 3, "correctness": 0.8, "ci95": [0.6, 1.0], "n": 5}]
    robustness = {"k": {"rag": curve}, "distractors": {"rag": curve}}
    files = write_reports(tmp_path, SUMMARY, RECORDS, robustness)
    assert files["robustness.png"].exists()
    assert render_html(SUMMARY, RECORDS, robustness, {}).count("Robustness") == 1
    json.dumps(robustness)
