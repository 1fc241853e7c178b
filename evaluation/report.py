"""Reports of an evaluation run: the summary table, verdicts in words, charts, Markdown and HTML.

Everything here reads the run's ``summary`` dict and its per-answer records; nothing generates
or scores. ``report.html`` is self-contained: its PNG charts are inlined as base64.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

# (summary key, column header) in the order the table shows them
TABLE_COLUMNS = [
    ("correctness", "correct"), ("token_f1", "F1"), ("rouge_l", "ROUGE-L"), ("retrieval_hit_at_k", "hit@k"),
    ("mrr", "MRR"), ("citation_precision", "cite P"), ("citation_recall", "cite R"), ("groundedness", "grounded"),
    ("abstention_accuracy", "abstain"), ("style", "style"), ("latency_p50_s", "p50 s"),
]
CHART_METRICS = ["correctness", "token_f1", "rouge_l", "citation_precision", "citation_recall", "groundedness",
                 "abstention_accuracy", "style"]
WORDS = {"correctness": "correctness", "token_f1": "token F1", "rouge_l": "ROUGE-L", "citation_precision":
         "citation precision", "citation_recall": "citation recall", "groundedness": "groundedness",
         "abstention_accuracy": "abstention accuracy", "style": "style", "retrieval_hit_at_k": "retrieval hit@k",
         "mrr": "MRR", "false_abstention_rate": "false abstention rate"}
ALPHA = 0.05


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ci(ci) -> str:
    if not ci or ci[0] is None:
        return "-"
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def summary_table(summary: dict) -> str:
    """The per-mode table as fixed-width text (what ``ragtune eval`` prints)."""
    header = ["mode", "n", "correct", "95% CI", *[h for k, h in TABLE_COLUMNS[1:]]]
    rows = []
    for mode, m in summary["modes"].items():
        rows.append([mode, str(m["n"]), _fmt(m["correctness"]), _ci(m["correctness_ci95"]),
                     *[_fmt(m.get(k)) for k, _ in TABLE_COLUMNS[1:]]])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def verdict(pair: str, metric: str, row: dict) -> str:
    """One comparison in plain words: "hybrid beats rag on correctness by +0.18, 95% CI [0.09, 0.27] (p=0.003)".

    The difference and its interval are told from the side of the mode that did better."""
    b, a = pair.split("-vs-", 1)
    name = WORDS.get(metric, metric)
    if row.get("delta") is None:
        return f"{b} and {a} cannot be compared on {name} (no question scored in both)"
    delta, ci, p = row["delta"], row["ci95"], row["p_value"]
    test = "McNemar" if row.get("test") == "mcnemar-exact" else "paired bootstrap"
    lower_is_better = metric in ("false_abstention_rate",)
    if (delta < 0) != lower_is_better and delta != 0:  # a won: tell it from a's side
        b, a, delta, ci = a, b, -delta, [None if x is None else -x for x in reversed(ci)]
    stats = f"{delta:+.2f}, 95% CI {_ci(ci)} ({test} p={p:.3g}, Holm-corrected, n={row.get('n')})"
    excludes_zero = ci[0] is not None and (ci[0] > 0 or ci[1] < 0)
    if p < ALPHA and delta != 0:
        return f"{b} beats {a} on {name} by {stats}"
    if excludes_zero:
        # the interval is per comparison, the p-value corrected over all of them: say both
        return (f"{b} leads {a} on {name} by {delta:+.2f}, 95% CI {_ci(ci)} excluding zero, but not "
                f"significantly after Holm's correction over every pair ({test} p={p:.3g}, n={row.get('n')})")
    return f"no significant difference between {b} and {a} on {name}: {stats}"


def verdicts(summary: dict, metrics: list[str] | None = None) -> list[str]:
    """Verdicts for every pair on correctness, then on the other metrics (only significant ones)."""
    lines = []
    for pair, row in summary.get("pairs", {}).items():
        lines.append(verdict(pair, "correctness", row))
    for pair, row in summary.get("pairs", {}).items():
        for metric, sub in (row.get("metrics") or {}).items():
            if (metrics is None or metric in metrics) and sub.get("delta") is not None and sub["p_value"] < ALPHA:
                lines.append(verdict(pair, metric, sub))
    return lines


def disagreements(records: list[dict], limit: int = 50) -> list[dict]:
    """Questions on which the modes disagree on correctness: id, question and each mode's verdict and answer."""
    by_id: dict[str, dict] = {}
    for r in records:
        entry = by_id.setdefault(r["id"], {"id": r["id"], "question": r["question"], "modes": {}})
        entry["modes"][r["mode"]] = {"correct": r["scores"]["correctness"], "answer": r["answer"]}
    out = [e for e in by_id.values() if len({m["correct"] for m in e["modes"].values()}) > 1]
    return out[:limit]


# --- charts --------------------------------------------------------------------------------

def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def metrics_chart(summary: dict) -> bytes:
    """Grouped bars: each metric by mode, with 95% bootstrap error bars (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = list(summary["modes"])
    metrics = [m for m in CHART_METRICS if any(summary["modes"][x].get(m) is not None for x in modes)]
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(metrics) + 2), 4))
    width = 0.8 / max(1, len(modes))
    x = np.arange(len(metrics))
    for i, mode in enumerate(modes):
        row = summary["modes"][mode]
        vals = [row.get(m) if row.get(m) is not None else np.nan for m in metrics]
        cis = [row.get("ci95", {}).get(m) or [None, None] for m in metrics]
        err = np.array([[v - c[0] if c[0] is not None and not np.isnan(v) else 0 for v, c in zip(vals, cis)],
                        [c[1] - v if c[1] is not None and not np.isnan(v) else 0 for v, c in zip(vals, cis)]])
        ax.bar(x + (i - (len(modes) - 1) / 2) * width, vals, width, yerr=np.clip(err, 0, None), capsize=3, label=mode)
    ax.set_xticks(x, [WORDS.get(m, m) for m in metrics], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% CI)")
    ax.set_title("Metrics by mode")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
    return _png(fig)


def latency_chart(records: list[dict]) -> bytes:
    """Box plot of answer latency per mode (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r["mode"] for r in records))
    data = [[r["latency_s"] for r in records if r["mode"] == m and r.get("latency_s") is not None] for m in modes]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(modes) + 2), 3.5))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(modes) + 1), modes)
    ax.set_ylabel("seconds per answer")
    ax.set_title("Latency by mode")
    return _png(fig)


def robustness_chart(robustness: dict) -> bytes:
    """Correctness against k and against added distractors, one line per adapter (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key, xlabel in [(axes[0], "k", "retrieved chunks (k)"), (axes[1], "distractors", "added distractor chunks")]:
        for label, curve in robustness.get(key, {}).items():
            xs = [p["x"] for p in curve]
            ys = [p["correctness"] for p in curve]
            lo = [p["correctness"] - p["ci95"][0] for p in curve]
            hi = [p["ci95"][1] - p["correctness"] for p in curve]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("correctness (95% CI)")
    axes[0].legend(frameon=False)
    fig.suptitle("Robustness")
    return _png(fig)


# --- documents -----------------------------------------------------------------------------

def write_reports(out_dir: Path, summary: dict, records: list[dict], robustness: dict | None = None) -> dict[str, Path]:
    """Write charts (PNG), report.md and a self-contained report.html into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    charts = {"metrics": metrics_chart(summary), "latency": latency_chart(records)}
    if robustness:
        charts["robustness"] = robustness_chart(robustness)
    paths = {}
    for name, png in charts.items():
        paths[f"{name}.png"] = out_dir / f"{name}.png"
        paths[f"{name}.png"].write_bytes(png)
    paths["report.md"] = out_dir / "report.md"
    paths["report.md"].write_text(render_markdown(summary, records, robustness, list(charts)), encoding="utf-8")
    paths["report.html"] = out_dir / "report.html"
    paths["report.html"].write_text(render_html(summary, records, robustness, charts), encoding="utf-8")
    return paths


def _freshness_lines(summary: dict) -> list[str]:
    lines = []
    for mode, row in summary["modes"].items():
        groups = row.get("groups") or {}
        if "freshness" in groups:
            g = groups["freshness"]
            lines.append(f"{mode}: {g['correct']}/{g['n']} freshness questions right")
    return lines


def render_markdown(summary: dict, records: list[dict], robustness: dict | None, charts: list[str]) -> str:
    """The report as Markdown, with the charts as relative image links."""
    parts = [f"# Evaluation: {summary.get('qa_file', '')}", "",
             f"{summary.get('n_questions', '?')} questions, knowledge base `{summary.get('kb')}`, "
             f"generator `{summary.get('generator')}`, k={summary.get('k')}. 95% bootstrap intervals; pairwise "
             "exact McNemar tests on correctness, paired bootstrap on the other metrics, Holm-corrected.", "",
             "```", summary_table(summary), "```", ""]
    if summary.get("skipped"):
        parts += ["**Skipped:** " + "; ".join(f"{m}: {why}" for m, why in summary["skipped"].items()), ""]
    parts += ["## Verdicts", "", *[f"- {v}" for v in verdicts(summary)], ""]
    fresh = _freshness_lines(summary)
    if fresh:
        parts += ["## Freshness (documents added after training)", "", *[f"- {x}" for x in fresh], ""]
    parts += ["## Charts", "", *[f"![{c}]({c}.png)" for c in charts], ""]
    if robustness:
        parts += ["## Robustness", "", "Correctness against k and against added distractors (robustness.json).", ""]
        for key in ("k", "distractors"):
            for label, curve in robustness.get(key, {}).items():
                parts.append(f"- {label}, by {key}: " + ", ".join(f"{p['x']}: {p['correctness']:.2f}" for p in curve))
        parts.append("")
    dis = disagreements(records)
    parts += ["## Questions where the modes disagree", ""]
    if not dis:
        parts.append("(none)")
    else:
        modes = list(summary["modes"])
        parts.append("| id | question | " + " | ".join(modes) + " |")
        parts.append("|---|---|" + "---|" * len(modes))
        for d in dis:
            cells = []
            for m in modes:
                entry = d["modes"].get(m)
                if entry is None:
                    cells.append("")
                else:
                    mark = "✓" if entry["correct"] else "✗"
                    cells.append(f"{mark} {_md_escape(entry['answer'][:80])}")
            parts.append(f"| {d['id']} | {_md_escape(d['question'])} | " + " | ".join(cells) + " |")
    parts.append("")
    return "\n".join(parts)


def _md_escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
pre{background:#f6f6f6;padding:1em;overflow-x:auto}table{border-collapse:collapse;font-size:0.9em}
td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}th{background:#f0f0f0}.ok{color:#17803d}.no{color:#b3261e}
img{max-width:100%}"""


def render_html(summary: dict, records: list[dict], robustness: dict | None, charts: dict[str, bytes]) -> str:
    """The report as one HTML file with inlined PNG charts and no external resources."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ragtune evaluation</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Evaluation: {e(str(summary.get('qa_file', '')))}</h1>",
             f"<p>{summary.get('n_questions', '?')} questions, knowledge base <code>{e(str(summary.get('kb')))}</code>, "
             f"generator <code>{e(str(summary.get('generator')))}</code>, k={summary.get('k')}. 95% bootstrap intervals; "
             "pairwise exact McNemar tests on correctness, paired bootstrap on the other metrics, Holm-corrected.</p>",
             f"<pre>{e(summary_table(summary))}</pre>"]
    if summary.get("skipped"):
        parts.append("<p><b>Skipped:</b> " + e("; ".join(f"{m}: {w}" for m, w in summary["skipped"].items())) + "</p>")
    parts.append("<h2>Verdicts</h2><ul>" + "".join(f"<li>{e(v)}</li>" for v in verdicts(summary)) + "</ul>")
    fresh = _freshness_lines(summary)
    if fresh:
        parts.append("<h2>Freshness (documents added after training)</h2><ul>"
                     + "".join(f"<li>{e(x)}</li>" for x in fresh) + "</ul>")
    parts.append("<h2>Charts</h2>")
    for name, png in charts.items():
        parts.append(f"<p><img alt='{e(name)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'></p>")
    if robustness:
        parts.append("<h2>Robustness</h2><pre>" + e(json.dumps(robustness, indent=1)[:4000]) + "</pre>")
    dis = disagreements(records)
    parts.append("<h2>Questions where the modes disagree</h2>")
    if not dis:
        parts.append("<p>(none)</p>")
    else:
        modes = list(summary["modes"])
        parts.append("<table><tr><th>id</th><th>question</th>" + "".join(f"<th>{e(m)}</th>" for m in modes) + "</tr>")
        for d in dis:
            cells = []
            for m in modes:
                entry = d["modes"].get(m)
                if entry is None:
                    cells.append("<td></td>")
                else:
                    cls, mark = ("ok", "✓") if entry["correct"] else ("no", "✗")
                    cells.append(f"<td><span class='{cls}'>{mark}</span> {e(entry['answer'][:300])}</td>")
            parts.append(f"<tr><td>{e(d['id'])}</td><td>{e(d['question'])}</td>{''.join(cells)}</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
