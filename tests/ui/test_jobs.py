"""Background jobs: detached commands whose status and output survive the page that started them."""

from __future__ import annotations

import sys
import time

from ui.jobs import list_jobs, load_job, start_job, stop_job


def _wait(job, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        job = load_job(job.record_path)
        if job.status != "running":
            return job
        time.sleep(0.1)
    return load_job(job.record_path)


def test_finished_job_records_exit_status_and_output(workspace):
    job = start_job(workspace, "eval", "hello", [sys.executable, "-c", "print('hello from the job')"])
    job = _wait(job)
    assert job.status == "finished" and job.returncode == 0
    assert "hello from the job" in job.log_tail()


def test_failing_job_is_reported_as_failed(workspace):
    job = _wait(start_job(workspace, "train", "bad", [sys.executable, "-c", "raise SystemExit(3)"]))
    assert (job.status, job.returncode) == ("failed", 3)


def test_job_is_found_again_from_its_record(workspace):
    job = start_job(workspace, "train", "slow", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        again = list_jobs(workspace, kind="train")
        assert [j.id for j in again] == [job.id] and again[0].status == "running"
    finally:
        stop_job(load_job(job.record_path))
    assert _wait(job).status == "stopped"
