"""End to end in a real browser: ``ragtune ui`` on loopback, driven by Debian's headless Chromium.

Asks a question on a knowledge base, waits for the streamed answer, expands its [1] citation to
the cited passage and saves a screenshot under the test's tmp folder. Skips (with the reason)
when Chromium or its driver is not installed: ``make browser-deps`` installs them.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver (make browser-deps, or "
                              "apt-get install -y chromium chromium-driver)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ragtune ui exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"ragtune ui did not answer on {url} within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def ui_server(ui_workspace, office_kb, tmp_path):
    """``ragtune ui`` on a free loopback port; yields its URL."""
    port = _free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ragtune", "ui", "--port", str(port), "--headless"],
                                env=dict(os.environ, RAGTUNE_HOME=str(ui_workspace.home)), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through Selenium, with a fresh profile and no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_question_in_the_browser_gets_an_answer_whose_citation_expands_to_its_passage(ui_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(ui_server)
    wait = WebDriverWait(browser, 180)
    box = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='stChatInputTextArea']")))
    box.send_keys("When did the Harbour office open?")
    box.send_keys(Keys.ENTER)

    def citation(driver):
        for summary in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stExpander'] summary"):
            # the summary's text starts with its icon's ligature name ("keyboard_arrow_right")
            if any(line.strip().startswith("[1]") for line in summary.text.splitlines()):
                return summary
        return False

    summary = wait.until(citation)
    assert "Harbour office" in summary.text
    answer = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")[-1].text
    assert "[1]" in answer
    summary.click()
    expander = summary.find_element(By.XPATH, "ancestor::*[@data-testid='stExpander'][1]")
    wait.until(lambda _: "opened in 1998" in expander.text)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", expander)
    shot = tmp_path / "chat-citation.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


@pytest.fixture
def leak_server():
    """A loopback HTTP server standing in for an outside host; yields (url, list of the paths it was asked for)."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_an_image_in_a_cited_passage_is_not_fetched_by_the_browser(ui_workspace, leak_server, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from ingest.pipeline import ingest_paths
    from retrieval.knowledge_base import KnowledgeBase

    leak_url, asked = leak_server
    doc = tmp_path / "docs" / "office.md"
    doc.parent.mkdir()
    # an image and a link in the passage the answer cites: showing it must fetch neither
    doc.write_text("# Harbour office\n\nThe Harbour office opened in 1998 on Quay Street, next to the ferry ramp. "
                   f"![map]({leak_url}/leak.png?kb=secret) See [the plan]({leak_url}/plan) or {leak_url}/bare.\n",
                   encoding="utf-8")
    with KnowledgeBase.open(ui_workspace.kb_path("default"), embedder=str(ui_workspace.config()["models"]["embedder"]),
                            create=True) as kb:
        assert ingest_paths(kb, [doc], progress=False).added == [str(doc)]
    port = _free_port()
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ragtune", "ui", "--port", str(port), "--headless"],
                                env=dict(os.environ, RAGTUNE_HOME=str(ui_workspace.home)), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        browser.get(url)
        wait = WebDriverWait(browser, 180)
        box = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='stChatInputTextArea']")))
        box.send_keys("When did the Harbour office open?")
        box.send_keys(Keys.ENTER)

        def citation(driver):
            for summary in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stExpander'] summary"):
                if any(line.strip().startswith("[1]") for line in summary.text.splitlines()):
                    return summary
            return False

        summary = wait.until(citation)
        summary.click()
        expander = summary.find_element(By.XPATH, "ancestor::*[@data-testid='stExpander'][1]")
        wait.until(lambda _: "opened in 1998" in expander.text)
        time.sleep(2)  # time for an image request to arrive, if one were made
        assert asked == [], f"the browser fetched {asked}"
        assert not [img for img in browser.find_elements(By.TAG_NAME, "img") if leak_url in (img.get_attribute("src") or "")]
        assert not [a for a in browser.find_elements(By.TAG_NAME, "a") if leak_url in (a.get_attribute("href") or "")]
        assert "image not shown" in expander.text and f"{leak_url}/leak.png" in expander.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
