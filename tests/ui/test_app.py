"""The app's navigation (AppTest): four pages, the chat first, each reachable."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"


def test_app_opens_on_the_chat_page_and_names_the_workspace(ui_workspace):
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "Chat"
    assert any(str(ui_workspace.home) in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("page, title", [("pages/knowledge_base.py", "Knowledge base"),
                                         ("pages/fine_tune.py", "Fine-tune"), ("pages/evaluate.py", "Evaluate & A/B")])
def test_every_page_is_reachable_from_the_navigation(ui_workspace, page, title):
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == title
