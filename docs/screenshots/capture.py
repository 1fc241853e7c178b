"""Take the README's UI screenshots: ``ragtune ui`` on a workspace, driven by headless Chromium.

    ragtune demo --no-ui                                # builds the demo KB, adapters and eval run
    .venv/bin/python docs/screenshots/capture.py --home ~/.ragtune

Writes chat.png, knowledge-base.png, fine-tune.png, evaluate.png and arena.png next to this file
(palette-quantized PNGs, a few hundred KB in all). Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_ui(home: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "ui", "--home", str(home), "--port", str(port),
                             "--headless"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the UI did not start")


def _browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--window-size={width},{height}", "--hide-scrollbars",
                 f"--user-data-dir=/tmp/ragtune-shots-{os.getpid()}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


def _save(driver, name: str) -> None:
    from PIL import Image

    time.sleep(1.5)  # let charts and fonts settle
    raw = HERE / f".{name}.raw.png"
    driver.save_screenshot(str(raw))
    image = Image.open(raw).convert("RGB")
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(HERE / f"{name}.png", optimize=True)
    raw.unlink()
    print(f"{name}.png  {(HERE / f'{name}.png').stat().st_size // 1024} KB")


def _wait(driver, condition, seconds: float = 600):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.5).until(condition)


def _click_text(driver, css: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.CSS_SELECTOR, css):
        if text in element.text:
            element.click()
            return
    raise SystemExit(f"no {css} with text {text!r}")


def _idle(driver) -> bool:
    """True once Streamlit has finished the current run (no 'Running...' status widget)."""
    from selenium.webdriver.common.by import By

    return not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")


PAGES = ("chat", "knowledge-base", "fine-tune", "evaluate", "arena")


def capture(home: Path, question: str, arena_question: str, arena_answer: str, search: str, width: int, height: int,
            pages: tuple[str, ...] = PAGES) -> None:
    """Drive every page and save one screenshot of each."""
    port = _free_port()
    proc = _start_ui(home, port)
    driver = _browser(width, height)
    url = f"http://127.0.0.1:{port}"
    try:
        driver.get(url)
    except BaseException:
        driver.quit()
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    try:
        _pages(driver, url, question, arena_question, arena_answer, search, pages)
    finally:
        driver.quit()
        os.killpg(proc.pid, signal.SIGTERM)


def _pages(driver, url: str, question: str, arena_question: str, arena_answer: str, search: str,
           pages: tuple[str, ...]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    if "chat" in pages:
        box = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid='stChatInputTextArea']"))
        time.sleep(2)
        box.send_keys(question, Keys.ENTER)

        def cited(d):
            css = "[data-testid='stChatMessage'] [data-testid='stExpander'] summary"
            for summary in d.find_elements(By.CSS_SELECTOR, css):
                if any(line.strip().startswith("[") for line in summary.text.splitlines()):
                    return summary
            return False

        _wait(driver, lambda d: " tokens" in d.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")[-1].text
              if len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")) > 1 else False, 900)
        _wait(driver, _idle)
        summary = cited(driver)
        if summary:
            summary.click()
        else:
            print("note: the answer has no citation")
        _save(driver, "chat")

    if "knowledge-base" in pages:
        driver.get(f"{url}/knowledge-base")
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='stMetric']"))
        _click_text(driver, "[role='tab']", "Search playground")
        query = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[aria-label='Query']"))
        query.send_keys(search, Keys.ENTER)
        _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stExpander']")) >= 3)
        _wait(driver, _idle)
        _save(driver, "knowledge-base")

    if "fine-tune" in pages:
        driver.get(f"{url}/fine-tune")
        _wait(driver, lambda d: "4. Adapters" in d.page_source, 120)
        _wait(driver, _idle)
        time.sleep(3)  # the runs section refreshes itself every 2 s
        for heading in driver.find_elements(By.CSS_SELECTOR, "h3"):
            if "3. Runs" in heading.text:
                driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
        _save(driver, "fine-tune")

    if "evaluate" in pages or "arena" in pages:
        driver.get(f"{url}/evaluate")
        _wait(driver, lambda d: "Evaluation run" in d.page_source or "No evaluation results" in d.page_source, 120)
        _wait(driver, _idle)
        for scroller in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMain']"):
            driver.execute_script("arguments[0].scrollTop = 250", scroller)
        if "evaluate" in pages:
            _save(driver, "evaluate")

    if "arena" in pages:
        _click_text(driver, "[role='tab']", "Blind arena")
        box = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[aria-label='Question']"))
        box.send_keys(arena_question)
        _click_text(driver, "button", "Get two answers")
        _wait(driver, lambda d: "A is better" in d.page_source, 900)
        answers = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stColumn']")
                   if c.text.startswith("Answer ")]
        right = [arena_answer.lower() in a.lower() for a in answers[:2]]
        vote = "Tie" if all(right) else "A is better" if right[0] else "B is better" if right[1] else "Both bad"
        _click_text(driver, "button", vote)
        _wait(driver, lambda d: "You voted" in d.page_source, 60)
        _wait(driver, _idle)
        for scroller in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMain']"):
            driver.execute_script("arguments[0].scrollTop = 280", scroller)
        _save(driver, "arena")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, type=Path, help="workspace to show (after ragtune demo)")
    parser.add_argument("--question",
                        default="What does a single adult ticket between Port Aldric and Brannock Isle cost?")
    parser.add_argument("--arena-question", default="Who chairs the Saltreach board of directors?")
    parser.add_argument("--arena-answer", default="Quellan", help="vote for the answer that contains this")
    parser.add_argument("--search", default="islander card discount")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=860)
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated subset of: " + ", ".join(PAGES))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the UI and the browser are stopped too
    capture(args.home.expanduser().resolve(), args.question, args.arena_question, args.arena_answer, args.search,
            args.width, args.height, tuple(p.strip() for p in args.pages.split(",") if p.strip()))


if __name__ == "__main__":
    main()
