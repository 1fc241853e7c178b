"""``ragtune ui``: what it refuses before starting Streamlit, and that stopping it stops Streamlit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_ui_on_a_non_loopback_host_is_refused_without_allow_remote(workspace):
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "ui", "--host", "0.0.0.0", "--port", str(_free_port()),
                             "--headless"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("ragtune ui --host 0.0.0.0 started the UI instead of refusing")
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "--allow-remote" in err and "no login" in err


def test_sigterm_to_ragtune_ui_stops_streamlit_and_frees_the_port(workspace, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "ui.log", "wb")
    # its own session, so that the clean-up below can reach an orphaned Streamlit too
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "ui", "--port", str(port), "--headless"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while not _answers(url) and time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()
            time.sleep(0.3)
        assert _answers(url)
        os.kill(proc.pid, signal.SIGTERM)  # the launcher only, as a service manager does
        proc.wait(timeout=30)
        deadline = time.time() + 20
        while _answers(url) and time.time() < deadline:
            time.sleep(0.3)
        assert not _answers(url), "Streamlit kept running after ragtune ui was stopped"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
