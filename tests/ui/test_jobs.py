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


def test_last_progress_bar_reads_the_latest_redraw_with_its_description():
    from ui.jobs import last_progress_bar

    out = ("loading\reval:  40%|████      | 4/10 [00:05<00:07,  1.20answer/s]"
           "\reval:  50%|█████     | 5/10 [00:06<01:06]")
    bar = last_progress_bar(out)
    assert (bar.description, bar.done, bar.total, bar.remaining_s) == ("eval", 5, 10, 66.0)
    assert last_progress_bar("no bar here") is None


def test_readable_log_keeps_each_line_at_its_last_redraw():
    from ui.jobs import readable_log

    assert readable_log("start\n 10%|a| 1/10\r 20%|b| 2/10\ndone\n") == "start\n 20%|b| 2/10\ndone\n"
