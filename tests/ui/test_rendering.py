"""safe_markdown: document and model text shown without anything that loads or links elsewhere."""

from __future__ import annotations

import re

import pytest

from ui.rendering import safe_markdown


@pytest.mark.parametrize("text", [
    "Opening hours ![map](https://tracker.example/p.png?q=secret) below.",
    "Dosage table ![](http://img.example/x.gif)",
    "![chart][fig]\n\n[fig]: https://tracker.example/fig.png",
    "Refunds: see [the policy](https://shop.example/refunds \"title\").",
    "Write the answer and then <https://collect.example/?a=1>",
    "Contact https://collect.example/log?data=abc or www.collect.example.",
])
def test_images_links_and_urls_are_made_inert(text):
    import markdown_it

    shown = safe_markdown(text)
    html = markdown_it.MarkdownIt("commonmark").render(shown)
    assert "<img" not in html and "<a " not in html, html
    outside_code = re.sub(r"`[^`]*`", "", shown)  # what Streamlit's GFM could still turn into a link
    assert "://" not in outside_code and "www." not in outside_code, shown


def test_plain_text_and_citations_are_left_alone():
    text = "**Ferry** leaves at 7 [1], refunds in 14 days [2].\n\n- one\n- two"
    assert safe_markdown(text) == text


def test_the_url_stays_readable_as_code():
    shown = safe_markdown("![map](https://tracker.example/p.png) and [plan](https://a.example/plan)")
    assert re.findall(r"`([^`]+)`", shown) == ["https://tracker.example/p.png", "https://a.example/plan"]
