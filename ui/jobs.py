"""Background jobs for the UI: ``ragtune train`` and ``ragtune eval`` run as detached processes.

A page reload (or a closed tab) must not kill a training run, so the UI never trains in its
own process: it starts the same CLI command a user would type, in a new session, with its
output in a log file, and keeps a small JSON record per job under ``runs/ui-jobs/``. A later
rerun (or a restarted UI) finds the job again from that record. A tiny wrapper process
(``python -m ui.jobs JOBFILE``) waits for the command and writes its exit status into the
record, so "finished", "failed" and "stopped" survive the UI too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ragtune.workspace import Workspace

log = logging.getLogger(__name__)

_CHILDREN: dict[str, subprocess.Popen] = {}  # wrappers started by this process, reaped on status checks


@dataclass
class Job:
    """A background command and where its output goes."""

    id: str
    kind: str  # "train" or "eval"
    name: str  # adapter name or eval label
    command: list[str]
    log_path: str
    record_path: str
    started_at: float
    pid: int | None = None  # the wrapper's pid (leader of the job's process group)
    returncode: int | None = None
    ended_at: float | None = None
    stopped: bool = False
    extra: dict = field(default_factory=dict)  # e.g. the run or out folder the command writes

    @property
    def status(self) -> str:
        """``running``, ``finished``, ``failed`` or ``stopped``."""
        if self.returncode is None and _alive(self.pid):
            return "running"
        if self.stopped:
            return "stopped"
        return "finished" if self.returncode == 0 else "failed"  # no returncode: the wrapper was killed

    @property
    def elapsed_s(self) -> float:
        """Seconds since start (until the end, once ended)."""
        return (self.ended_at or time.time()) - self.started_at

    def log_tail(self, max_chars: int = 4000) -> str:
        """The last ``max_chars`` of the job's combined output."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_chars))
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def save(self) -> None:
        """Write the record atomically."""
        tmp = Path(self.record_path).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, self.record_path)


_TQDM = re.compile(r"(?:^|[\r\n])(?:([^\r\n:|]+): *)?\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")


@dataclass(frozen=True)
class BarState:
    """The last drawn state of a tqdm progress bar in a command's output."""

    description: str
    done: int
    total: int
    remaining_s: float | None


def last_progress_bar(text: str) -> BarState | None:
    """The most recent tqdm bar state in ``text`` (None if the output has none yet)."""
    found = None
    for found in _TQDM.finditer(text):
        pass
    if found is None:
        return None
    description, done, total, _elapsed, remaining = found.groups()
    seconds = None
    if "?" not in remaining:
        seconds = 0.0
        for part in remaining.split(":"):
            seconds = seconds * 60 + float(part)
    return BarState((description or "").strip(), int(done), int(total), seconds)


def readable_log(text: str) -> str:
    """Command output as a terminal would show it: each progress-bar line at its last redraw."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n"))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def jobs_dir(ws: Workspace) -> Path:
    """Where job records and logs live: ``runs/ui-jobs``."""
    path = ws.runs_dir / "ui-jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ragtune_command(*args: str) -> list[str]:
    """The command line for ``ragtune ARGS...`` with this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "ragtune", *args]


def start_job(ws: Workspace, kind: str, name: str, command: list[str], extra: dict | None = None) -> Job:
    """Start ``command`` detached (new session), logging to a file; returns its record."""
    folder = jobs_dir(ws)
    job_id = f"{kind}-{name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}"
    job = Job(id=job_id, kind=kind, name=name, command=list(command), log_path=str(folder / f"{job_id}.log"),
              record_path=str(folder / f"{job_id}.json"), started_at=time.time(), extra=dict(extra or {}))
    job.save()
    root = str(Path(__file__).resolve().parent.parent)  # ``ui.jobs`` and ``ragtune`` import from a plain checkout
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, RAGTUNE_HOME=str(ws.home), PYTHONPATH=path, PYTHONUNBUFFERED="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "ui.jobs", job.record_path], env=env, cwd=str(ws.home),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _CHILDREN[job.id] = proc
    job.pid = proc.pid
    job.save()
    log.info("started %s job %s: %s", kind, job.id, " ".join(command))
    return job


def load_job(record_path: str | Path) -> Job:
    """Read a job record."""
    job = Job(**json.loads(Path(record_path).read_text(encoding="utf-8")))
    child = _CHILDREN.get(job.id)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(job.id, None)
        job = Job(**json.loads(Path(record_path).read_text(encoding="utf-8")))  # the wrapper wrote its result
    return job


def list_jobs(ws: Workspace, kind: str | None = None) -> list[Job]:
    """Every job record, newest first (only ``kind`` if given)."""
    found = []
    for path in jobs_dir(ws).glob("*.json"):
        try:
            job = load_job(path)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("skipping unreadable job record %s: %s", path, exc)
            continue
        if kind is None or job.kind == kind:
            found.append(job)
    return sorted(found, key=lambda j: -j.started_at)


def stop_job(job: Job) -> None:
    """Stop a running job (SIGTERM to its whole process group)."""
    if job.status != "running" or not job.pid:
        return
    job.stopped = True
    job.save()
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _run(record_path: str) -> int:
    """The wrapper: run the job's command, then record how it ended."""
    job = Job(**json.loads(Path(record_path).read_text(encoding="utf-8")))
    proc: subprocess.Popen | None = None
    terminated = False

    def forward(signum, _frame):
        nonlocal terminated
        terminated = True
        if proc is not None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    with open(job.log_path, "ab") as out:
        proc = subprocess.Popen(job.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if terminated:  # stopped before the command existed
            proc.terminate()
        code = proc.wait()
    job = Job(**json.loads(Path(record_path).read_text(encoding="utf-8")))  # keep a concurrent "stopped" mark
    job.returncode, job.ended_at = code, time.time()
    job.save()
    return code


if __name__ == "__main__":
    raise SystemExit(_run(sys.argv[1]))
