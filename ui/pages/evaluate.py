"""Evaluate & A/B: run the harness on a QA file and read its report; a blind side-by-side arena."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from ui.arena import ArenaConfig, ArenaStore, leaderboard, pick_pair
from ui.jobs import last_progress_bar, list_jobs, ragtune_command, readable_log, start_job, stop_job
from ui.rendering import safe_markdown
from ui.session import choose_kb, get_assistant, open_kb, reported_errors, save_upload, uploads_dir, workspace

ALL_MODES = ["prompt", "rag", "tuned", "hybrid"]
VOTE_LABELS = {"left": "A is better", "right": "B is better", "tie": "Tie", "both_bad": "Both bad"}


def qa_files(ws) -> dict[str, Path]:
    """QA files to offer: uploads in the workspace, then the demo's shipped eval set(s)."""
    found = {f"uploaded: {p.name}": p for p in sorted(uploads_dir(ws, "qa").glob("*.json*"))}
    import evaluation

    demo = Path(evaluation.__file__).resolve().parent / "demo_data"
    for path in sorted(demo.rglob("*.jsonl")) if demo.is_dir() else []:
        if "qa" in path.name or "eval" in path.name:
            found[f"demo: {path.relative_to(demo)}"] = path
    return found


def eval_runs(ws) -> list[Path]:
    """Evaluation output folders in the workspace (those holding a summary.json), newest first."""
    if not ws.runs_dir.is_dir():
        return []
    runs = [p.parent for p in ws.runs_dir.rglob("summary.json")]
    return sorted(runs, key=lambda p: -(p / "summary.json").stat().st_mtime)


def summary_rows(summary: dict) -> list[dict]:
    """One row per mode: n, correctness with its 95% interval, then the other metrics (the CLI table's columns)."""
    from evaluation.report import TABLE_COLUMNS

    rows = []
    for mode, metrics in (summary.get("modes") or {}).items():
        ci = metrics.get("correctness_ci95") or [None, None]
        row = {"mode": mode, "n": metrics.get("n"), "correct": metrics.get("correctness"),
               "95% CI": f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None else "–"}
        # a metric that does not apply to a mode (no retrieval in prompt mode) stays blank, not "None"
        row.update({header: float("nan") if metrics.get(key) is None else metrics[key]
                    for key, header in TABLE_COLUMNS[1:]})
        rows.append(row)
    return rows


def read_records(folder: Path) -> list[dict]:
    """The per-answer records of a run (results.jsonl)."""
    path = folder / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def show_run(folder: Path) -> None:
    """The summary table, verdicts, disagreements and charts of one evaluation output folder."""
    from evaluation.report import disagreements, verdicts

    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        st.error(f"{folder / 'summary.json'}: cannot read it ({exc})")
        return
    rows = summary_rows(summary)
    number_columns = [c for c in (rows[0] if rows else {}) if c not in ("mode", "n", "95% CI")]
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in number_columns})
    for mode, why in (summary.get("skipped") or {}).items():
        st.caption(f"Skipped {mode}: {why}")
    lines = verdicts(summary)
    if lines:
        st.markdown("**Pairwise verdicts** (McNemar on correctness, paired bootstrap on the rest, Holm-corrected)\n\n"
                    + "\n".join(f"- {line}" for line in lines))
    charts = sorted(folder.glob("*.png"))
    if charts:
        columns = st.columns(2)
        for i, chart in enumerate(charts):
            columns[i % 2].image(str(chart), caption=chart.stem.replace("_", " "))
    differing = disagreements(read_records(folder))
    if differing:
        with st.expander(f"Questions where the modes disagree ({len(differing)})"):
            st.dataframe([{"id": d["id"], "question": d["question"],
                           **{m: ("✓ " if v["correct"] else "✗ ") + v["answer"] for m, v in d["modes"].items()}}
                          for d in differing], hide_index=True, width="stretch")
    left, right = st.columns(2)
    for target, name, mime in ((left, "report.html", "text/html"), (right, "report.md", "text/markdown")):
        path = folder / name
        if path.exists():
            target.download_button(f"Download {name}", path.read_bytes(), file_name=name, mime=mime,
                                   key=f"dl-{folder.name}-{name}")


def answer_text(assistant, question: str, config: ArenaConfig) -> str:
    """One complete answer from ``config``."""
    return assistant.answer(question, mode=config.mode, adapter=config.adapter).text


def arena_configs(pairs: list[tuple[str, str | None]], has_documents: bool) -> list[ArenaConfig]:
    """Every contestant the assistant offers (rag and hybrid only when the knowledge base has documents)."""
    return [ArenaConfig(m, a) for m, a in pairs if has_documents or m not in ("rag", "hybrid")]


ws = workspace()
st.title("Evaluate & A/B")
kb_name = choose_kb(ws)
from finetune.adapters import list_adapters  # noqa: E402 (after the page header renders)

adapters = [a.name for a in list_adapters(ws)]
harness_tab, arena_tab = st.tabs(["Harness", "Blind arena"])

with harness_tab:
    st.caption("The same questions through each mode, scored without an external judge, with 95% intervals "
               "and paired tests. Runs in the background: you can leave this page.")
    runs = eval_runs(ws)
    if (newest := st.session_state.pop("eval_show", None)) in runs:
        st.session_state["eval_run"] = newest
    if runs:
        picked = st.selectbox("Evaluation run", runs, format_func=lambda p: p.name, key="eval_run")
        show_run(picked)
    else:
        st.info("No evaluation results yet: run one below, or `ragtune eval QA.jsonl`.")

    @st.fragment(run_every=3)
    def running_evals() -> None:
        """Live status of background evaluations (refreshes by itself)."""
        for job in list_jobs(ws, kind="eval")[:3]:
            out = Path(job.extra.get("out", ""))
            if job.status == "finished" and out not in runs and (out / "summary.json").exists():
                st.session_state["eval_show"] = out  # show the new results right away
                st.rerun(scope="app")
            state = {"running": ":material/progress_activity:", "finished": ":material/check_circle:",
                     "failed": ":material/error:", "stopped": ":material/stop_circle:"}[job.status]
            with st.expander(f"{job.name}: {job.status} ({job.elapsed_s:.0f} s)", icon=state,
                             expanded=job.status != "finished"):
                output = job.log_tail(200_000)
                bar = last_progress_bar(output)
                if bar is not None and bar.total and job.status == "running":
                    left = f", about {bar.remaining_s:.0f} s left" if bar.remaining_s is not None else ""
                    st.progress(min(bar.done / bar.total, 1.0), text=f"{bar.description or 'progress'}: "
                                f"{bar.done}/{bar.total} answers{left}")
                st.code(readable_log(output)[-1500:] or "(no output yet)", language=None)
                if job.status == "running" and st.button("Stop", key=f"stop-{job.id}"):
                    stop_job(job)

    running_evals()
    with st.expander("New evaluation", icon=":material/add:", expanded=not runs):
        upload = st.file_uploader("Upload a QA file (JSONL: id, question, answers, optional sources, "
                                  "answerable, style)", type=["jsonl", "json"], key="eval_upload")
        if upload is not None:
            save_upload(ws, "qa", upload.name, upload.getvalue())
        files = qa_files(ws)
        with st.form("eval_form"):
            choice = st.selectbox("QA file", list(files), key="eval_qa")
            modes = st.multiselect("Modes", ALL_MODES, default=ALL_MODES if adapters else ["prompt", "rag"],
                                   key="eval_modes")
            left, right = st.columns(2)
            adapter = left.selectbox("Adapter (tuned, hybrid)", adapters or ["(none)"], key="eval_adapter")
            limit = right.number_input("Only the first N questions (0 = all)", 0, 100000, 0, key="eval_limit")
            submitted = st.form_submit_button("Run evaluation", type="primary", icon=":material/play_arrow:")
        if submitted:
            if not choice or not modes:
                st.error("Pick a QA file and at least one mode.")
            elif any(m in ("tuned", "hybrid") for m in modes) and not adapters:
                st.error("The tuned and hybrid modes need an adapter: train one on the Fine-tune page.")
            elif kb_name is None and any(m in ("rag", "hybrid") for m in modes):
                st.error("The rag and hybrid modes need a knowledge base: create one on the Knowledge base page.")
            else:
                from datetime import datetime

                out = ws.runs_dir / f"eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
                args = ["eval", str(files[choice]), "--modes", ",".join(modes), "--out", str(out)]
                args += ["--kb", kb_name] if kb_name else []
                args += ["--adapter", adapter] if adapters and any(m in ("tuned", "hybrid") for m in modes) else []
                args += ["--limit", str(int(limit))] if limit else []
                start_job(ws, "eval", out.name, ragtune_command(*args), extra={"out": str(out)})
                st.rerun()

with arena_tab:
    st.caption("Two answers from two randomly chosen configurations, in random order, labels hidden. "
               "Vote, then see who was who. Votes are stored in the workspace's arena.sqlite.")
    store = ArenaStore(ws.home / "arena.sqlite")
    assistant = get_assistant(ws, kb_name)
    configs: list[ArenaConfig] = []
    with reported_errors("assistant"):
        has_documents = kb_name is not None and bool(open_kb(ws, kb_name).list_documents())
        configs = arena_configs(list(assistant.modes_available()), has_documents)
    battle = st.session_state.get("arena_battle")
    with st.form("arena_form", clear_on_submit=False):
        question = st.text_input("Question", key="arena_question")
        asked = st.form_submit_button("Get two answers", type="primary", icon=":material/casino:",
                                      disabled=len(configs) < 2)
    if len(configs) < 2:
        st.info("The arena needs two configurations: add a knowledge base (rag) or train an adapter (tuned).")
    if asked and question.strip():
        left, right = pick_pair(configs)
        with reported_errors("could not answer"), st.status("Generating two answers…") as status:
            with st.spinner("Loading the model…"):
                assistant.warm_up()
            status.update(label="Answer A…")
            left_text = answer_text(assistant, question, left)
            status.update(label="Answer B…")
            right_text = answer_text(assistant, question, right)
            status.update(label="Two answers ready", state="complete")
            battle = {"question": question, "kb": kb_name or "", "left": left.label, "right": right.label,
                      "left_answer": left_text, "right_answer": right_text, "vote": None}
            st.session_state["arena_battle"] = battle
    if battle:
        columns = st.columns(2)
        for column, side, name in ((columns[0], "left", "A"), (columns[1], "right", "B")):
            with column.container(border=True):
                revealed = f" — `{battle[side]}`" if battle["vote"] else ""
                st.markdown(f"**Answer {name}**{revealed}")
                st.markdown(safe_markdown(battle[f"{side}_answer"]) or "*(empty answer)*")
        if battle["vote"] is None:
            buttons = st.columns(4)
            for column, (vote, label) in zip(buttons, VOTE_LABELS.items()):
                if column.button(label, key=f"arena_vote_{vote}", width="stretch"):
                    store.record_vote(battle["question"], battle["left"], battle["right"], battle["left_answer"],
                                      battle["right_answer"], vote, kb=battle["kb"])
                    battle["vote"] = vote
                    st.rerun()
        else:
            st.success(f"You voted **{VOTE_LABELS[battle['vote']]}**. A was `{battle['left']}`, "
                       f"B was `{battle['right']}`.", icon=":material/visibility:")

    st.subheader("Leaderboard")
    everywhere = st.toggle("All knowledge bases", value=False, key="arena_all")
    battles = store.battles(kb=None if everywhere else (kb_name or ""))
    board = leaderboard(battles)
    if not board:
        st.caption("No votes yet.")
    else:
        st.dataframe(
            [{"configuration": r.config, "rating": round(r.rating),
              "rating 95% CI": f"{r.rating_low:.0f}–{r.rating_high:.0f}",
              "win rate": r.win_rate, "win rate 95% CI": f"{r.win_low:.2f}–{r.win_high:.2f}", "battles": r.battles,
              "wins": r.wins, "losses": r.losses, "ties": r.ties, "both bad": r.both_bad} for r in board],
            hide_index=True, width="stretch", column_config={"win rate": st.column_config.ProgressColumn(
                min_value=0.0, max_value=1.0, format="%.2f")})
        st.caption(f"{len(battles)} vote(s). Bradley-Terry ratings on the Elo scale (1000 = average), "
                   "95% bootstrap intervals; win rate counts ties and both-bad as half, with Wilson intervals.")
