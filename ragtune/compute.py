"""One thread runs this process's model work (torch), so that decoding keeps its speed.

torch's CPU ops run on OpenMP (libgomp on Linux). Every thread that calls into torch gets its own
OpenMP team. Once a process holds more OpenMP threads than there are cores, libgomp stops idle
team threads from spinning. Each of the ~1000 small ops of a decode step then waits for a sleeping
thread to wake up. Measured on 2 cores (SmolLM2-135M, int4 weights, one decode thread):

- 57 tokens/s when one thread does all the torch work;
- 33 tokens/s once another thread (a request's retrieval, a model load) has run a matmul.

So the embedder, the local generator and training all run here: ``run`` hands a function to the
compute thread and waits for it, and runs it inline when called from the compute thread itself.
The thread exits after a few idle seconds, and its OpenMP team goes with it, so a process that
later computes on its own thread is not slowed either.

Ctrl-C reaches the caller waiting in ``run``; it raises ``KeyboardInterrupt`` there at once and
flags the running job, which stops at its next step (a training step, a decoded token; long jobs
check ``interrupted()``). At exit the thread is stopped and joined: a C++ runtime destroyed under
a live model thread aborts the process ("terminate called without an active exception").
"""

from __future__ import annotations

import atexit
import queue
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

T = TypeVar("T")

IDLE_EXIT_S = 5.0  # an idle compute thread exits after this long; the next call starts a new one
_POLL_S = 0.2  # how often a waiting caller wakes to let a pending Ctrl-C raise
EXIT_WAIT_S = 30.0  # at exit, how long the running job gets to notice ``interrupted()`` and stop


class ComputeThread:
    """A single worker thread that starts on demand and exits when idle."""

    def __init__(self, name: str = "ragtune-compute", idle_exit_s: float = IDLE_EXIT_S):
        self.name, self.idle_exit_s = name, idle_exit_s
        self.threads: int | None = None  # torch threads for the worker, None = torch's default
        self.started = 0  # worker threads started so far (tests check the idle exit)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._interrupt = threading.Event()  # set by Ctrl-C in a waiting caller and at exit
        self._closing = False

    def on_thread(self) -> bool:
        """Whether the caller is the compute thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)`` on the compute thread; its ``Future`` carries the result."""
        future: Future = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("the process is exiting: no more model work")
            self._queue.put((future, fn, args, kwargs))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self.started += 1
                self._thread.start()
        return future

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` computed on the compute thread (inline when already there)."""
        if self.on_thread():
            return fn(*args, **kwargs)
        future = self.submit(fn, *args, **kwargs)
        try:
            while True:  # short waits: Ctrl-C gets through even where a blocked wait ignores signals
                try:
                    return future.result(timeout=_POLL_S)
                except TimeoutError:
                    continue
        except KeyboardInterrupt:
            if not future.cancel():  # already running: ask it to stop at its next step
                self._interrupt.set()
            raise

    def interrupted(self) -> bool:
        """Whether the running job should stop now (its caller got Ctrl-C, or the process is exiting)."""
        return self._interrupt.is_set()

    def shutdown(self, timeout: float = EXIT_WAIT_S) -> None:
        """Cancel queued jobs, ask the running one to stop, and wait up to ``timeout`` for the thread to end."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._interrupt.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        if thread is not None:
            self._queue.put(None)  # wakes an idle thread
            thread.join(timeout)

    def set_threads(self, threads: int | None) -> None:
        """torch's intra-op threads for model work (``None``: torch's default, one per core)."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        if threads is not None and self._thread is not None:
            self.submit(_set_torch_threads, threads)

    def _loop(self) -> None:
        if self.threads:
            _set_torch_threads(self.threads)
        while True:
            try:
                item = self._queue.get(timeout=self.idle_exit_s)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # nothing arrived while taking the lock: retire
                        self._thread = None
                        return
                continue
            if item is None:  # shutdown
                return
            future, fn, args, kwargs = item
            del item
            if self._closing or not future.set_running_or_notify_cancel():
                future.cancel()
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # the caller re-raises it from ``result()``
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                if not self._closing:
                    self._interrupt.clear()  # the interrupted job is over; the next one runs normally
            del future, fn, args, kwargs  # do not keep the last job's objects alive while idle


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


_COMPUTE = ComputeThread()
atexit.register(_COMPUTE.shutdown)


def run(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn`` on the process's compute thread and return its result (see the module docstring)."""
    return _COMPUTE.run(fn, *args, **kwargs)


def submit(fn: Callable[..., T], *args, **kwargs) -> Future:
    """Queue ``fn`` on the process's compute thread without waiting."""
    return _COMPUTE.submit(fn, *args, **kwargs)


def on_compute_thread() -> bool:
    return _COMPUTE.on_thread()


def interrupted() -> bool:
    """Whether the job running on the compute thread should stop at its next step."""
    return _COMPUTE.interrupted()


def set_threads(threads: int | None) -> None:
    """torch threads for the process's model work (they apply on the compute thread only)."""
    _COMPUTE.set_threads(threads)
