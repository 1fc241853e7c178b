"""Fine-tune: pick and check a dataset, start a background training run, watch it, manage adapters."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ragtune.workspace import WorkspaceError, check_name
from ui.jobs import list_jobs, ragtune_command, readable_log, start_job, stop_job
from ui.rendering import safe_markdown
from ui.session import choose_kb, reported_errors, save_upload, uploads_dir, workspace

FORMATS = ["auto", "alpaca", "sharegpt", "messages"]
PREVIEW_EXAMPLES = 3
# The settings the form offers, in order: (field of the training settings, label, help).
SETTINGS = [
    ("rank", "LoRA rank", "higher learns more and costs memory (lora, qlora, dora)"),
    ("alpha", "LoRA alpha", "scale of the update; commonly 2 × rank"),
    ("dropout", "LoRA dropout", None),
    ("lr", "Learning rate", "blank = the method's default"),
    ("epochs", "Epochs", None),
    ("max_steps", "Max steps", "stop after this many optimizer steps (blank = run all epochs)"),
    ("batch_size", "Batch size", None),
    ("grad_accum", "Gradient accumulation", "effective batch = batch size × this"),
    ("max_length", "Max tokens per example", "longer examples are dropped or truncated"),
    ("val_ratio", "Validation share", "held out for eval loss and early stopping"),
    ("freeze_top", "Trainable top layers (freeze)", "only for the freeze method"),
    ("seed", "Seed", None),
]


@st.cache_resource(show_spinner=False, max_entries=2)
def _tokenizer(home: str):
    """The base generator's tokenizer (for the formatted preview)."""
    from transformers import AutoTokenizer

    from assistant.models import model_settings
    from finetune.base_model import resolve_generator
    from ragtune.workspace import Workspace

    ws = Workspace.open(home)
    return AutoTokenizer.from_pretrained(resolve_generator(model_settings(ws).generator, ws.models_dir))


def train_settings_defaults(ws) -> dict:
    """The effective training defaults: code defaults, then config.yaml's ``train:`` section."""
    from finetune.training import load_train_settings

    with reported_errors("training settings"):
        return load_train_settings(ws).to_dict()
    return {}


def setting_input(field: str, label: str, help_text: str | None, default):
    """A number input for one training setting; blank (None) keeps the method's default."""
    import typing

    from finetune.training import TrainSettings

    hint = typing.get_type_hints(TrainSettings)[field]
    kind = int if int in (typing.get_args(hint) or (hint,)) else float
    if kind is int:
        return st.number_input(label, value=default, min_value=0, step=1, help=help_text, key=f"ft_{field}",
                               placeholder="default")
    return st.number_input(label, value=default, min_value=0.0, format="%g", step=None, help=help_text,
                           key=f"ft_{field}", placeholder="default")


def train_command(data: list[str], name: str, method: str, fmt: str, values: dict, defaults: dict,
                  from_kb: str | None = None) -> list[str]:
    """The ``ragtune train`` command for the form's values (only settings that differ from the defaults)."""
    args = ["train", *data, "--name", name, "--method", method]  # its progress bar is how the UI follows it
    if from_kb:
        args += ["--from-kb", from_kb]
    if fmt != "auto" and data:
        args += ["--format", fmt]
    for key, value in values.items():
        if value is None or value == defaults.get(key):
            continue
        args += [f"--{key.replace('_', '-')}", str(value)]
    return ragtune_command(*args)


def show_examples(ws, path: Path, fmt: str) -> int | None:
    """Validate a dataset and show a preview; returns the number of examples (None if invalid)."""
    from finetune.datasets import load_examples

    examples = None
    with reported_errors("dataset"):
        examples = load_examples(path, fmt)
    if not examples:
        return None
    kinds = sorted({e.format for e in examples})
    st.success(f"**{path.name}**: {len(examples)} valid examples ({', '.join(kinds)})", icon=":material/check:")
    with st.expander(f"Preview of the first {min(PREVIEW_EXAMPLES, len(examples))} examples", expanded=True):
        tokenizer = None
        with reported_errors("tokenizer"), st.spinner("Loading the tokenizer…"):
            tokenizer = _tokenizer(str(ws.home))
        for example in examples[:PREVIEW_EXAMPLES]:
            st.caption(f"line {example.line}")
            for message in example.messages:
                with st.chat_message(message["role"] if message["role"] != "system" else "assistant",
                                     avatar=":material/settings:" if message["role"] == "system" else None):
                    st.markdown(safe_markdown(message["content"]))  # a dataset is often someone else's text
            if tokenizer is not None:
                from finetune.datasets.encoding import render

                with reported_errors("chat template"):
                    st.code(render(tokenizer, example.messages), language=None, wrap_lines=True)
            st.divider()
    return len(examples)


def show_progress(ws, job) -> None:
    """Loss curve, step, ETA and log tail of one training job."""
    from ui.training_progress import read_progress

    log_text = job.log_tail(2_000_000)
    progress = read_progress(ws, job.name, log_text)
    done, total = progress.step, progress.total_steps
    if total:
        eta = f" · about {progress.eta_s:.0f} s left" if progress.eta_s is not None and job.status == "running" else ""
        st.progress(min(done / total, 1.0), text=f"step {done}/{total}{eta}")
    elif job.status == "running":
        st.caption("Preparing (validating data, loading the base model)…")
    points = [{"step": p["step"], "loss": p[kind], "curve": kind} for p in progress.losses
              for kind in ("train loss", "eval loss") if kind in p]
    if points:
        st.line_chart(points, x="step", y="loss", color="curve", height=220)
    with st.expander("Log"):
        st.code(readable_log(log_text)[-3000:] or "(no output yet)", language=None)


ws = workspace()
st.title("Fine-tune")
kb_name = choose_kb(ws)
defaults = train_settings_defaults(ws)
from finetune.methods import METHODS  # noqa: E402

st.subheader("1. Data")
source = st.radio("Training data", ["Upload a file", "A file uploaded before", "Build from a knowledge base"],
                  horizontal=True, key="ft_source")
data_paths: list[str] = []
from_kb = None
fmt = "auto"
valid = False
if source == "Upload a file":
    upload = st.file_uploader("Alpaca, ShareGPT or chat-messages JSON/JSONL", type=["jsonl", "json"], key="ft_upload")
    if upload is not None:
        path = save_upload(ws, "datasets", upload.name, upload.getvalue())
        st.session_state["ft_picked"] = path.name
        data_paths = [str(path)]
elif source == "A file uploaded before":
    files = sorted(p.name for p in uploads_dir(ws, "datasets").glob("*.json*"))
    if not files:
        st.info("No datasets uploaded yet.")
    else:
        picked = st.selectbox("Dataset", files, key="ft_picked")
        data_paths = [str(uploads_dir(ws, "datasets") / picked)]
else:
    if kb_name is None:
        st.info("Create a knowledge base first (Knowledge base page).")
    else:
        from_kb = kb_name
        st.caption(f"Questions are generated from the passages of **{kb_name}** (extractive and cloze, the oracle "
                   "passage among retrieved distractors, some with no answer to teach abstention): the adapter "
                   "learns to read context and cite, not to memorise facts.")
        valid = True
if data_paths:
    fmt = st.selectbox("Format", FORMATS, key="ft_format")
    valid = show_examples(ws, Path(data_paths[0]), fmt) is not None

st.subheader("2. Method and settings")
with st.form("ft_form"):
    left, right = st.columns(2)
    method = left.selectbox("Method", list(METHODS), format_func=lambda m: f"{m} — {METHODS[m].DESCRIPTION}",
                            key="ft_method")
    suggested = Path(data_paths[0]).stem if data_paths else (f"grounded-{from_kb}" if from_kb else "")
    if st.session_state.get("ft_name", "") in ("", st.session_state.get("ft_suggested")):  # not typed by the user
        st.session_state["ft_name"] = suggested
    st.session_state["ft_suggested"] = suggested
    name = right.text_input("Adapter name", key="ft_name")
    values = {}
    columns = st.columns(4)
    for i, (field, label, help_text) in enumerate(s for s in SETTINGS if s[0] in defaults):
        with columns[i % 4]:
            values[field] = setting_input(field, label, help_text, defaults[field])
    start = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")
if start:
    try:
        check_name(name, "adapter")
    except WorkspaceError as exc:
        st.error(str(exc))
    else:
        if not valid:
            st.error("Pick valid training data first (section 1).")
        elif any(j.name == name and j.status == "running" for j in list_jobs(ws, kind="train")):
            st.error(f"A run named {name!r} is already training.")
        else:
            start_job(ws, "train", name, train_command(data_paths, name, method, fmt, values, defaults, from_kb),
                      extra={"method": method})
            st.toast(f"Training {name!r} started in the background.", icon=":material/rocket_launch:")

st.subheader("3. Runs")


@st.fragment(run_every=2)
def runs() -> None:
    """Live view of the training runs started from the UI (refreshes by itself; survives reloads)."""
    jobs = list_jobs(ws, kind="train")
    if not jobs:
        st.caption("No training runs yet.")
        return
    latest = {}
    for job in jobs:  # newest first: the run a Resume would continue
        latest.setdefault(job.name, job)
    for job in jobs[:5]:
        with st.container(border=True):
            head, stop = st.columns([5, 1])
            head.markdown(f"**{job.name}** · {job.extra.get('method', '')} · {job.status} · {job.elapsed_s:.0f} s")
            if job.status == "running" and stop.button("Stop", key=f"stop-{job.id}", icon=":material/stop:"):
                stop_job(job)
                st.rerun(scope="fragment")
            resumable = job.status in ("stopped", "failed") and job is latest.get(job.name) \
                and not (ws.adapters_dir / job.name).exists()
            if resumable and stop.button("Resume", key=f"resume-{job.id}", icon=":material/resume:",
                                         help="continue from the run's last checkpoint (ragtune train --resume)"):
                start_job(ws, "train", job.name, ragtune_command("train", "--name", job.name, "--resume"),
                          extra=dict(job.extra, resumed=job.id))
                st.rerun(scope="fragment")
            show_progress(ws, job)


runs()

st.subheader("4. Adapters")
from finetune.adapters import delete_adapter, list_adapters, merge_adapter  # noqa: E402

adapters = list_adapters(ws)
if not adapters:
    st.caption("No adapters yet.")
else:
    def _metric(info, key):
        return (info.manifest.get("metrics") or {}).get(key)

    st.dataframe([{"name": a.name, "method": a.method, "base": Path(a.base).name, "created": a.created_at[:19],
                   "train examples": (a.manifest.get("counts") or {}).get("train"), "steps": _metric(a, "steps"),
                   "eval loss before": _metric(a, "eval_loss_before"), "eval loss after": _metric(a, "eval_loss_after"),
                   "learned": _metric(a, "learned"), "path": str(a.path)} for a in adapters],
                 hide_index=True, width="stretch")
    chosen = st.selectbox("Adapter", [a.name for a in adapters], key="ft_adapter")
    info = next(a for a in adapters if a.name == chosen)
    curve, report = info.path / "loss_curve.png", info.path / "report.md"
    with st.expander("Loss curve and report", expanded=False):
        if curve.exists():
            st.image(str(curve), width=520)
        if report.exists():
            st.markdown(report.read_text(encoding="utf-8"))
    with st.expander("Manifest"):
        st.json(info.manifest, expanded=1)
    left, right = st.columns(2)
    with left.form("ft_merge"):
        out = st.text_input("Merge into a standalone model folder", value=str(ws.home / "merged" / chosen),
                            key="ft_merge_out")
        if st.form_submit_button("Merge / export", icon=":material/merge:"):
            with reported_errors("merge"), st.spinner(f"Merging {chosen}…"):
                folder = merge_adapter(ws, chosen, Path(out))
                st.success(f"Merged into `{folder}`: plain `AutoModelForCausalLM.from_pretrained` loads it.")
    with right.form("ft_delete"):
        sure = st.checkbox(f"Yes, delete {chosen}", key="ft_delete_sure")
        if st.form_submit_button("Delete adapter", icon=":material/delete:", disabled=False):
            if not sure:
                st.warning("Tick the box to confirm.")
            else:
                with reported_errors("delete"):
                    delete_adapter(ws, chosen)
                    from ui.session import forget_assistants

                    forget_assistants()
                    st.rerun()
