"""The compute thread: one thread for torch work, started on demand, retired when idle, interruptible."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from ragtune.compute import ComputeThread


@pytest.fixture
def ct():
    c = ComputeThread(name="test-compute", idle_exit_s=0.2)
    yield c
    c.shutdown(timeout=5)


def test_jobs_run_in_order_on_one_thread_that_is_not_the_callers(ct):
    seen = [ct.run(lambda i=i: (i, threading.current_thread())) for i in range(3)]
    assert [i for i, _ in seen] == [0, 1, 2]
    threads = {t for _, t in seen}
    assert len(threads) == 1 and threading.current_thread() not in threads
    assert ct.started == 1


def test_errors_come_back_to_the_caller(ct):
    def boom():
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        ct.run(boom)
    assert ct.run(lambda: 7) == 7  # the thread survives its job's error


def test_a_job_submitting_more_work_runs_it_inline_instead_of_deadlocking(ct):
    assert ct.run(lambda: ct.run(lambda: ct.on_thread())) is True
    assert ct.on_thread() is False


def test_idle_thread_retires_and_a_new_one_starts_on_demand(ct):
    first = ct.run(threading.current_thread)
    deadline = time.monotonic() + 5
    while first.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not first.is_alive()  # its OpenMP team goes with it
    second = ct.run(threading.current_thread)
    assert second is not first and ct.started == 2


def test_threads_setting_applies_on_the_compute_thread(ct):
    import torch

    before = torch.get_num_threads()
    ct.set_threads(1)
    assert ct.run(torch.get_num_threads) == 1
    assert torch.get_num_threads() == before  # the caller's own setting is untouched


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test (an earlier test may have replaced it), restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_in_the_waiting_caller_stops_the_running_job(ct, default_sigint):
    """Ctrl-C reaches the caller waiting in run(); the job sees interrupted() and ends; the next job runs normally."""
    import _thread

    started = threading.Event()
    steps = []

    def long_job():
        started.set()
        deadline = time.monotonic() + 20  # never hang the suite: fail instead
        while not ct.interrupted() and time.monotonic() < deadline:
            steps.append(1)
            time.sleep(0.01)
        return "stopped" if ct.interrupted() else "never interrupted"

    def press_ctrl_c():
        started.wait(5)
        time.sleep(0.1)
        _thread.interrupt_main()  # what SIGINT does in the main thread

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        ct.run(long_job)
    assert steps
    assert ct.run(lambda: ct.interrupted()) is False  # the flag was cleared once the job ended


def test_shutdown_cancels_queued_jobs_and_stops_the_running_one(ct):
    started = threading.Event()

    def long_job():
        started.set()
        while not ct.interrupted():
            time.sleep(0.01)
        return "stopped"

    running = ct.submit(long_job)
    queued = ct.submit(lambda: "never")
    started.wait(5)
    ct.shutdown(timeout=5)
    assert running.result(timeout=1) == "stopped"
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="exiting"):
        ct.submit(lambda: None)
