"""Write the two PDF documents of this domain from man pages rendered as plain text.

The PDFs give the knowledge base a third format (besides HTML and plain text), as a team's own
documents would. They are the man pages of xz(1) and zstd(1) exactly as `man` renders them on
Debian 12, set in Courier one page of the rendering per 64 lines, deterministic (reportlab's
invariant mode), so rebuilding them gives the same bytes:

    MANWIDTH=78 man --nh --nj -E UTF-8 -P cat 1 xz | col -bx > /tmp/xz.txt
    MANWIDTH=78 man --nh --nj -E UTF-8 -P cat 1 zstd | col -bx > /tmp/zstd.txt
    .venv/bin/python evaluation/domains/sqlite/make_pdfs.py /tmp/xz.txt /tmp/zstd.txt
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

log = logging.getLogger(__name__)

OUT = Path(__file__).resolve().parent / "docs" / "man"
LINES_PER_PAGE = 64
FONT, SIZE, LEADING = "Courier", 8.5, 11.5


def text_to_pdf(text: str, title: str, out: Path) -> Path:
    """Set ``text`` line for line in Courier on A4 pages; returns ``out``."""
    lines = text.splitlines()
    pdf = canvas.Canvas(str(out), pagesize=A4, invariant=1)
    pdf.setTitle(title)
    width, height = A4
    for start in range(0, len(lines), LINES_PER_PAGE):
        page = pdf.beginText(40, height - 50)
        page.setFont(FONT, SIZE, leading=LEADING)
        for line in lines[start:start + LINES_PER_PAGE]:
            page.textLine(line)
        pdf.drawText(page)
        pdf.showPage()
    pdf.save()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="+", type=Path, help="man pages rendered as text (NAME.txt)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for NAME.pdf (default {OUT})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.texts:
        out = text_to_pdf(path.read_text(encoding="utf-8"), f"{path.stem}(1)", args.out / f"{path.stem}.pdf")
        log.info("wrote %s (%s bytes)", out, f"{out.stat().st_size:,}")


if __name__ == "__main__":
    main()
