"""HTML pages: the readable text of the body (headings, paragraphs, lists, tables), without page chrome."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.errors import IngestError
from ingest.limits import IngestLimits
from ingest.loaders.document import ExtractedDocument, sha256_of
from ingest.loaders.text import decode_text, read_bytes

# Page chrome and non-text: navigation, banners, scripts. Their text would pollute every chunk.
DROPPED_TAGS = ("script", "style", "nav", "header", "footer", "aside", "noscript", "template", "svg", "iframe",
                "head", "button", "select", "canvas", "object", "map")
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = frozenset("""address article blockquote body caption center dd details dialog div dl dt fieldset figcaption
    figure form hgroup hr html li main menu ol p section summary table tbody td tfoot th thead tr ul""".split())
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def load_html(path: Path, source: str, limits: IngestLimits = IngestLimits()) -> ExtractedDocument:
    """A .html/.htm file: readable body text with headings as their own lines, titled by ``<title>``."""
    data = read_bytes(path, source, limits)
    if not data:
        raise IngestError(source, "empty file; nothing to ingest (add content or remove the file)")
    declared = _CHARSET.search(data[:4096])
    text = decode_text(data, source, declared.group(1).decode("ascii") if declared else None)
    try:
        from bs4 import BeautifulSoup
        from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

        soup = BeautifulSoup(text, "html.parser")
        title_tag = soup.find("title")
        page_title = _collapse(title_tag.get_text(" ")) if title_tag else ""
        for node in soup.find_all(string=lambda s: isinstance(s, (Comment, Declaration, Doctype, ProcessingInstruction))):
            node.extract()
        for tag in soup.find_all(list(DROPPED_TAGS)):
            # An article's own <header> holds its title and byline, not site chrome: keep it.
            if not (tag.name == "header" and tag.find_parent(["article", "main"])):
                tag.decompose()
        for tag in soup.find_all(attrs={"hidden": True}):
            tag.decompose()
        renderer = _Renderer()
        renderer.walk(soup)
        renderer.flush()
    except IngestError:
        raise
    except Exception as exc:  # html.parser rarely fails, but a malformed file must not crash ingest
        raise IngestError(source, f"cannot parse the HTML ({type(exc).__name__}: {exc}); check the file") from None
    body, headings = renderer.result()
    if not body.strip():
        raise IngestError(source, "no readable text in the HTML body (only markup, scripts or navigation); "
                                  "nothing to ingest")
    first_h1 = next((label for _, level, label in headings if level == 1), "")
    title = page_title or first_h1 or (headings[0][2] if headings else "") or path.stem
    return ExtractedDocument(source=source, title=title, format="html", text=body, sha256=sha256_of(data),
                             headings=headings)


def _collapse(text: str) -> str:
    return " ".join(text.split())


class _Renderer:
    """Walks the tree once, emitting blocks separated by blank lines; headings record their offsets."""

    def __init__(self):
        self.blocks: list[str] = []
        self.levels: list[int] = []  # heading level per block, 0 for body text
        self.inline: list[str] = []

    def walk(self, root):
        """Render ``root``'s subtree. Iterative, so deeply nested markup cannot exhaust the stack."""
        from bs4.element import NavigableString, Tag

        stack = [(iter(root.children), False)]  # (children, is a block: flush when leaving it)
        while stack:
            child = next(stack[-1][0], None)
            if child is None:
                if stack.pop()[1]:
                    self.flush()
            elif isinstance(child, NavigableString):
                self.inline.append(str(child))
            elif not isinstance(child, Tag):
                continue
            elif child.name in _HEADINGS:
                self.flush()
                self.add(_collapse(child.get_text(" ")), _HEADINGS[child.name])
            elif child.name == "br":
                self.inline.append("\n")
            elif child.name in ("ul", "ol"):
                self.flush()
                self.add("\n".join(_list_lines(child)))
            elif child.name == "table":
                self.flush()
                self.add("\n".join(_table_lines(child)))
            elif child.name == "pre":
                self.flush()
                self.add(child.get_text().strip("\n"))
            else:
                block = child.name in _BLOCKS
                if block:
                    self.flush()
                stack.append((iter(child.children), block))

    def flush(self):
        """Turn the pending inline text into a paragraph block (``<br>`` lines kept)."""
        raw = "".join(self.inline)
        self.inline = []
        lines = [" ".join(line.split()) for line in raw.split("\n")]
        self.add("\n".join(line for line in lines if line))

    def add(self, text: str, level: int = 0):
        if text.strip():
            self.blocks.append(text)
            self.levels.append(level)

    def result(self) -> tuple[str, tuple[tuple[int, int, str], ...]]:
        """The joined text and (offset, level, text) of every heading in it."""
        headings, pos = [], 0
        for block, level in zip(self.blocks, self.levels):
            if level:
                headings.append((pos, level, block))
            pos += len(block) + 2
        return "\n\n".join(self.blocks), tuple(headings)


# Nesting deeper than this is drawn at this indent: the depth of a list carries no meaning for
# retrieval, and indenting 5,000 levels would make the text grow with the square of the depth.
MAX_LIST_INDENT = 8


def _list_lines(lst) -> list[str]:
    """A ``<ul>``/``<ol>`` as "- item" / "1. item" lines, nested lists indented.

    Iterative (a stack of open lists), so a hostile page nested thousands of levels deep reads
    like any other instead of exhausting Python's recursion limit and losing the whole document.
    """
    from bs4.element import NavigableString, Tag

    lines: list[str] = []
    stack = [(lst.name, iter(enumerate(lst.find_all("li", recursive=False), 1)), 0)]
    while stack:
        kind, items, depth = stack[-1]
        entry = next(items, None)
        if entry is None:
            stack.pop()
            continue
        n, item = entry
        parts, nested = [], []
        for child in item.children:
            if isinstance(child, Tag) and child.name in ("ul", "ol"):
                nested.append(child)
            elif isinstance(child, (Tag, NavigableString)):
                parts.append(child.get_text(" ") if isinstance(child, Tag) else str(child))
        marker = f"{n}." if kind == "ol" else "-"
        label = _collapse(" ".join(parts))
        if label:
            lines.append(f"{'  ' * min(depth, MAX_LIST_INDENT)}{marker} {label}")
        for sub in reversed(nested):  # the first nested list on top: read before the item's siblings
            stack.append((sub.name, iter(enumerate(sub.find_all("li", recursive=False), 1)), depth + 1))
    return lines


def _table_lines(table) -> list[str]:
    """A table as its caption, then one "cell | cell" line per row."""
    lines = []
    caption = table.find("caption")
    if caption is not None:
        lines.append(_collapse(caption.get_text(" ")))
    for row in table.find_all("tr"):
        cells = [_collapse(cell.get_text(" ")) for cell in row.find_all(["td", "th"], recursive=False)]
        if any(cells):
            lines.append(" | ".join(cells))
    return [line for line in lines if line]
