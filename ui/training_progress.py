"""Live progress of a background ``ragtune train``: step, ETA and the loss curve so far.

Read from what the run itself writes, so a reloaded page (or a restarted UI) picks it up:

1. ``runs/train-<name>/trainer_log.jsonl`` if the run writes one (one Trainer log dict per line);
2. else the newest ``checkpoints/checkpoint-*/trainer_state.json`` (its ``log_history``) and, once the
   run has finished, ``log_history.json``;
3. and the job's own output: the Trainer's progress bar (``12/50 [00:10<00:30, ..., loss=2.31,
   eval_loss=2.05]``), which gives the current step, the ETA and the latest losses between checkpoints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.workspace import Workspace

# A bare tqdm bar (no description, unlike "Loading weights: ..."), as the Trainer draws it.
_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:?]+)(?:,\s*([^\]]*))?\]")
_POSTFIX = re.compile(r"\b(loss|eval_loss)=([-+\d.eE]+)")


@dataclass
class TrainingProgress:
    """Where a run is: optimizer steps done of the total, seconds elapsed and left, losses by step."""

    step: int = 0
    total_steps: int = 0
    elapsed_s: float | None = None
    eta_s: float | None = None
    losses: list[dict] = field(default_factory=list)  # {"step", "train loss"?, "eval loss"?}, by step


def _seconds(clock: str) -> float | None:
    if "?" in clock:
        return None
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def parse_progress_bar(log_text: str) -> TrainingProgress:
    """Step, total, elapsed, ETA and (step, loss) points from a Trainer progress bar in ``log_text``."""
    progress = TrainingProgress()
    points: dict[int, dict] = {}
    for segment in re.split(r"[\r\n]", log_text):
        match = _BAR.match(segment)
        if not match:
            continue
        step, total, elapsed, left, postfix = match.groups()
        progress.step, progress.total_steps = int(step), int(total)
        progress.elapsed_s, progress.eta_s = _seconds(elapsed), _seconds(left)
        for key, value in _POSTFIX.findall(postfix or ""):
            label = "train loss" if key == "loss" else "eval loss"
            try:
                number = float(value)
            except ValueError:
                continue
            previous = [p[label] for s, p in sorted(points.items()) if label in p]
            if not previous or previous[-1] != number:  # the postfix repeats the last loss until the next log
                # the bar is drawn at the end of step N, before step N's log arrives: it shows step N-1's loss
                logged_at = max(int(step) - 1, 0)
                points.setdefault(logged_at, {"step": logged_at})[label] = number
    progress.losses = [points[s] for s in sorted(points)]
    return progress


def losses_from_log_history(history: list[dict]) -> list[dict]:
    """Loss points from a Trainer ``log_history`` (train ``loss`` and ``eval_loss`` entries)."""
    points: dict[int, dict] = {}
    for entry in history:
        step = entry.get("step")
        if step is None:
            continue
        if entry.get("loss") is not None:
            points.setdefault(int(step), {"step": int(step)})["train loss"] = float(entry["loss"])
        if entry.get("eval_loss") is not None:
            points.setdefault(int(step), {"step": int(step)})["eval loss"] = float(entry["eval_loss"])
    return [points[s] for s in sorted(points)]


def _saved_history(run_dir: Path) -> tuple[list[dict], int]:
    """The fullest log history the run folder holds, and the total steps if it says."""
    live = run_dir / "trainer_log.jsonl"
    if live.exists():
        rows = []
        for line in live.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        total = max((int(r.get("max_steps") or r.get("total_steps") or 0) for r in rows), default=0)
        return rows, total
    final = run_dir / "log_history.json"
    if final.exists():
        try:
            return json.loads(final.read_text(encoding="utf-8")), 0
        except ValueError:
            pass
    states = sorted((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.split("-")[-1]) if p.parent.name.split("-")[-1].isdigit() else -1)
    for path in reversed(states):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return state.get("log_history") or [], int(state.get("max_steps") or 0)
    return [], 0


def read_progress(ws: Workspace, name: str, log_text: str = "") -> TrainingProgress:
    """The progress of training run ``name``: the run folder's logs merged with its progress bar in ``log_text``."""
    from finetune.training import run_dir_for

    bar = parse_progress_bar(log_text)
    history, total = _saved_history(run_dir_for(ws, name))
    saved = losses_from_log_history(history)
    last_saved = saved[-1]["step"] if saved else -1
    # exact values from the run folder, then the bar's (rounded) ones for the steps since
    bar.losses = saved + [p for p in bar.losses if p["step"] > last_saved]
    bar.total_steps = bar.total_steps or total
    if not bar.step and saved:
        bar.step = saved[-1]["step"]
    return bar
