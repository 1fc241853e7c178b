"""Loaders: each format's text, title, structure and page spans; every bad input is one IngestError."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from ingest.errors import IngestError
from ingest.loaders import LOADERS, SUPPORTED_EXTENSIONS, ExtractedDocument, load_document


def _error(path, **kwargs) -> IngestError:
    with pytest.raises(IngestError) as info:
        load_document(path, **kwargs)
    assert "\n" not in str(info.value), "errors are one line"
    assert str(info.value).startswith(f"{info.value.source}: ")
    return info.value


# --- registry -----------------------------------------------------------------------------------

def test_registry_covers_every_supported_extension_including_htm():
    assert set(LOADERS) == SUPPORTED_EXTENSIONS
    assert {".txt", ".md", ".html", ".htm", ".pdf", ".docx"} <= SUPPORTED_EXTENSIONS


def test_source_defaults_to_the_path_and_can_be_given(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello")
    assert load_document(path).source == str(path)
    assert load_document(path, source="docs/a.txt").source == "docs/a.txt"


def test_sha256_is_of_the_raw_file_bytes(tmp_path):
    path = tmp_path / "a.md"
    path.write_bytes(b"# T\r\n\r\nbody\r\n")
    assert load_document(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --- txt ----------------------------------------------------------------------------------------

def test_txt_keeps_text_and_is_titled_by_the_file_stem(tmp_path):
    path = tmp_path / "release-notes.txt"
    path.write_text("Version 2 adds hybrid search.\n\nIt also fixes bugs.\n")
    doc = load_document(path)
    assert isinstance(doc, ExtractedDocument)
    assert (doc.title, doc.format, doc.pages, doc.headings) == ("release-notes", "txt", (), ())
    assert doc.text == "Version 2 adds hybrid search.\n\nIt also fixes bugs.\n"


def test_windows_newlines_are_normalized(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n")
    assert load_document(path).text == "one\ntwo\nthree\n"


@pytest.mark.parametrize("sentence", [
    "Le café est très bon à Zürich.",
    "Größe und Übung für die Straße",
    "año niño señor",
    "Ålesund og Ærø",
    "café",
])
def test_latin1_text_decodes_correctly(tmp_path, sentence):
    path = tmp_path / "latin.txt"
    path.write_bytes(sentence.encode("latin-1"))
    assert load_document(path).text == sentence


def test_windows_1252_smart_quotes_and_euro_decode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("“Quoted” costs 5 € – really’s".encode("cp1252"))
    assert load_document(path).text == "“Quoted” costs 5 € – really’s"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_byte_order_mark_selects_the_encoding(tmp_path, encoding):
    path = tmp_path / "a.txt"
    path.write_bytes("Grüße, 世界".encode(encoding))
    assert load_document(path).text == "Grüße, 世界"


def test_cyrillic_windows_1251_is_left_to_the_detector(tmp_path):
    text = "Привет, мир. Это тестовый документ о поиске и генерации ответов на вопросы. " * 4
    path = tmp_path / "ru.txt"
    path.write_bytes(text.encode("cp1251"))
    assert load_document(path).text == text


# --- markdown -----------------------------------------------------------------------------------

def test_markdown_headings_have_offsets_levels_and_clean_text(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text("Intro line.\n\n# The *Guide*\n\n## Install [now](http://x)\n\ntext\n")
    doc = load_document(path)
    assert doc.format == "md"
    assert doc.headings == ((13, 1, "The Guide"), (28, 2, "Install now"))
    for offset, _, _ in doc.headings:
        assert doc.text[offset] == "#"


def test_markdown_title_is_the_first_level_one_heading(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text("## Preface\n\nx\n\n# Real Title\n\ny\n")
    assert load_document(path).title == "Real Title"


def test_markdown_without_headings_is_titled_by_the_stem(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("just text\n")
    assert load_document(path).title == "notes"


def test_markdown_hash_lines_in_fenced_code_are_not_headings(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("# Real\n\n```bash\n# a comment\n```\n\n~~~\n## also code\n~~~\n")
    assert [h[2] for h in load_document(path).headings] == ["Real"]


def test_markdown_setext_headings_are_recognized(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("Title\n=====\n\nSection\n-------\n\ntext\n\n- item\n---\n")
    doc = load_document(path)
    assert [(lvl, t) for _, lvl, t in doc.headings] == [(1, "Title"), (2, "Section")]
    assert doc.title == "Title"


def test_markdown_front_matter_title_wins(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("---\ntitle: \"From Front Matter\"\n# not: heading\n---\n# Heading\n")
    doc = load_document(path)
    assert doc.title == "From Front Matter"
    assert [h[2] for h in doc.headings] == ["Heading"]


# --- html ---------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html><html><head><title> Deploy  Guide </title><style>p{color:red}</style></head>
<body><nav>Home | Blog</nav><header>Site banner</header>
<h1>Deploying</h1><p>Run the <b>server</b> on port 8080.<br>Then check it.</p><!-- a comment -->
<script>var secret = 1;</script><noscript>enable js</noscript>
<ul><li>install</li><li>configure<ol><li>edit config</li></ol></li></ul>
<h2>Ports</h2><table><caption>Defaults</caption><tr><th>Service</th><th>Port</th></tr><tr><td>api</td><td>8080</td></tr></table>
<aside>Related posts</aside><footer>(c) 2025</footer></body></html>"""


def test_html_drops_chrome_and_scripts(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(_PAGE)
    text = load_document(path).text
    for gone in ("Home | Blog", "Site banner", "secret", "enable js", "a comment", "Related posts", "(c) 2025", "color"):
        assert gone not in text


def test_html_keeps_headings_paragraphs_lists_and_tables_readable(tmp_path):
    path = tmp_path / "page.htm"
    path.write_text(_PAGE)
    doc = load_document(path)
    assert doc.format == "html"
    assert doc.text == ("Deploying\n\nRun the server on port 8080.\nThen check it.\n\n- install\n- configure\n"
                        "  1. edit config\n\nPorts\n\nDefaults\nService | Port\napi | 8080")
    assert [(doc.text[o:o + len(t)], lvl) for o, lvl, t in doc.headings] == [("Deploying", 1), ("Ports", 2)]


def test_html_article_header_is_kept_while_the_page_banner_is_dropped(tmp_path):
    path = tmp_path / "post.html"
    path.write_text("<header>Site banner</header><article><header><h1>Post title</h1><p>By Ann</p></header>"
                    "<p>Body.</p></article>")
    doc = load_document(path)
    assert doc.text == "Post title\n\nBy Ann\n\nBody."
    assert doc.title == "Post title"


def test_html_title_is_the_title_tag_else_the_first_h1(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(_PAGE)
    assert load_document(path).title == "Deploy Guide"
    path.write_text("<h2>Sub</h2><p>x</p><h1>Top</h1>")
    assert load_document(path).title == "Top"


def test_html_meta_charset_is_honoured(tmp_path):
    path = tmp_path / "page.html"
    path.write_bytes('<html><head><meta charset="iso-8859-1"></head><body><p>Crème brûlée</p></body></html>'
                     .encode("latin-1"))
    assert load_document(path).text == "Crème brûlée"


def test_deeply_nested_html_is_read(tmp_path):
    path = tmp_path / "deep.html"
    path.write_text("<div>" * 5000 + "deep <b>text</b>" + "</div>" * 5000)
    assert load_document(path).text == "deep text"


def test_html_lists_nested_5000_levels_deep_are_read_whole(tmp_path):
    path = tmp_path / "deep-list.html"
    depth = 5000
    path.write_text("<html><body><ul>" + "".join(f"<li>level {i}<ul>" for i in range(depth))
                    + "<li>bottom</li>" + "</ul></li>" * depth + "</ul><p>After the list.</p></body></html>")
    lines = load_document(path).text.split("\n")
    assert lines[0] == "- level 0" and lines[1] == "  - level 1"
    assert lines[depth] == "                - bottom"  # deep levels share the deepest indent
    assert lines[-1] == "After the list." and len(lines) == depth + 3


def test_html_with_only_scripts_and_navigation_is_rejected(tmp_path):
    path = tmp_path / "app.html"
    path.write_text("<html><body><nav>Menu</nav><script>app()</script></body></html>")
    assert "no readable text" in _error(path).reason


# --- pdf ----------------------------------------------------------------------------------------

def test_pdf_pages_are_spans_into_the_text_with_the_metadata_title(tmp_path, build_pdf):
    path = build_pdf(tmp_path / "report.pdf", [["Alpha page one."], ["Beta page two."], ["Gamma page three."]],
                     title="Quarterly Report")
    doc = load_document(path)
    assert (doc.format, doc.title) == ("pdf", "Quarterly Report")
    assert [n for n, _, _ in doc.pages] == [1, 2, 3]
    assert [doc.text[s:e] for _, s, e in doc.pages] == ["Alpha page one.", "Beta page two.", "Gamma page three."]


@pytest.mark.parametrize("placeholder", [None, "untitled", "Microsoft Word - draft3.docx", "Document1"])
def test_pdf_without_a_real_metadata_title_is_titled_by_the_stem(tmp_path, build_pdf, placeholder):
    path = build_pdf(tmp_path / "scan-042.pdf", [["Some text."]], title=placeholder)
    assert load_document(path).title == "scan-042"


def test_pdf_outline_entries_become_headings_on_their_pages(tmp_path, build_pdf):
    path = build_pdf(tmp_path / "book.pdf", [["Intro", "Welcome."], ["Methods", "We measured."]],
                     outline={0: "Intro", 1: "Methods"})
    doc = load_document(path)
    assert [(doc.text[o:o + len(t)], t) for o, _, t in doc.headings] == [("Intro", "Intro"), ("Methods", "Methods")]
    assert doc.pages[1][1] <= doc.headings[1][0] < doc.pages[1][2]


def _draw_pdf(path, lines):
    """A one-page PDF with each (x, y, text) drawn where it says."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for x, y, text in lines:
        c.drawString(x, y, text)
    c.showPage()
    c.save()
    return path


def test_pdf_table_rows_become_pipe_rows_like_html_and_docx_tables(tmp_path):
    rows = (("Vessel", "Built", "Passengers"), ("Corrie Dawn", "2009", "312"), ("Orrin Wren", "2011", "60"))
    path = _draw_pdf(tmp_path / "fleet.pdf", [(x, 700 - 16 * i, cell) for i, row in enumerate(rows)
                                              for x, cell in zip((72, 250, 400), row)])
    assert load_document(path).text.split("\n") == ["Vessel | Built | Passengers", "Corrie Dawn | 2009 | 312",
                                                      "Orrin Wren | 2011 | 60"]


def test_pdf_table_cell_wrapped_above_its_row_joins_that_row():
    from ingest.loaders.pdf import pipe_tables

    layout = "Measure  2023  2022\nPunctuality (within 10\nminutes)  94.3%  92.8%\nMembers  9,340  8,870"
    assert pipe_tables(layout).split("\n") == ["Measure | 2023 | 2022", "Punctuality (within 10 minutes) | 94.3% | 92.8%",
                                               "Members | 9,340 | 8,870"]


def test_pdf_lists_prose_and_a_lone_gapped_line_are_not_tables():
    from ingest.loaders.pdf import pipe_tables

    layout = ("•  Keep children with you.\n•  Read the safety notices.\n1.  Check in early.\n2.  Board on foot.\n"
              "Contact  0190 447 2290\nThe office opens at nine.")
    assert pipe_tables(layout) == layout


def test_two_column_pdf_pages_are_read_column_by_column(tmp_path):
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    left = [f"Left column line {i} tells the first half of the story." for i in range(12)]
    right = [f"Right column line {i} continues with the second half here." for i in range(12)]
    path = tmp_path / "paper.pdf"
    c = canvas.Canvas(str(path), pagesize=A4)
    c.setFont("Helvetica", 7)
    for x, column in ((40, left), (310, right)):
        for i, line in enumerate(column):
            c.drawString(x, 800 - 12 * i, line)
    c.showPage()
    c.save()
    text = load_document(path).text
    assert text.index(left[-1]) < text.index(right[0]), "the left column is read before the right one"


def test_pdf_running_headers_and_page_footers_are_dropped(tmp_path, build_pdf):
    bodies = [["Ferries sail daily.", "Book online.", "Cars pay extra."], ["Dogs are welcome.", "Keep them leashed."],
              ["Refunds take a week.", "Ask the desk.", "Keep your ticket.", "Claims close in May."]]
    pages = [[f"Acme Corp - Handbook - page {n}", *body, "", f"Page {n} of 3"] for n, body in enumerate(bodies, 1)]
    doc = load_document(build_pdf(tmp_path / "h.pdf", pages))
    assert [doc.text[s:e].split("\n") for _, s, e in doc.pages] == bodies


def test_pdf_with_an_owner_password_only_opens_with_the_empty_password(tmp_path, build_pdf):
    from reportlab.lib.pdfencrypt import StandardEncryption

    path = build_pdf(tmp_path / "locked.pdf", [["Readable text."]], encrypt=StandardEncryption("", ownerPassword="o"))
    assert load_document(path).text == "Readable text."


def test_aes_256_pdf_with_an_owner_password_only_opens(tmp_path, build_pdf):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(build_pdf(tmp_path / "plain.pdf", [["Bank statement text."]])))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    writer.write(tmp_path / "aes.pdf")
    assert load_document(tmp_path / "aes.pdf").text == "Bank statement text."


def test_pdf_needing_a_password_says_decrypt_it_first(tmp_path, build_pdf):
    from reportlab.lib.pdfencrypt import StandardEncryption

    path = build_pdf(tmp_path / "secret.pdf", [["Hidden."]], encrypt=StandardEncryption("pw", ownerPassword="o"))
    assert "encrypted PDF" in _error(path).reason
    assert "decrypt it first" in _error(path).reason


def test_pdf_with_no_text_layer_says_scanned_and_suggests_ocr(tmp_path):
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path = tmp_path / "scan.pdf"
    c = canvas.Canvas(str(path), pagesize=A4)
    c.rect(100, 100, 300, 300, fill=1)  # a drawing, no text: what a scan looks like to a text extractor
    c.showPage()
    c.save()
    reason = _error(path).reason
    assert "no extractable text" in reason and "OCR" in reason


def test_truncated_pdf_is_reported_corrupt(tmp_path, build_pdf):
    good = build_pdf(tmp_path / "good.pdf", [["Some text here."]])
    path = tmp_path / "broken.pdf"
    path.write_bytes(good.read_bytes()[:300])
    assert "corrupt" in _error(path).reason


def test_garbage_after_a_pdf_header_is_reported_corrupt(tmp_path):
    path = tmp_path / "junk.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    assert "corrupt" in _error(path).reason


def test_non_pdf_with_a_pdf_extension_is_rejected(tmp_path):
    path = tmp_path / "notes.pdf"
    path.write_text("these are plain notes")
    assert "not a PDF" in _error(path).reason


# --- docx ---------------------------------------------------------------------------------------

def test_docx_paragraphs_headings_lists_and_tables_in_order(tmp_path, build_docx):
    path = build_docx(tmp_path / "manual.docx", [
        ("h1", "Manual"), ("p", "Read this first."), ("h2", "Install"), ("bullet", "download"),
        ("bullet", "run setup"), ("table", [["Option", "Default"], ["port", "8080"]]), ("h2", "Use"), ("p", "Ask."),
    ], title="Product Manual")
    doc = load_document(path)
    assert (doc.format, doc.title) == ("docx", "Product Manual")
    assert doc.text == ("Manual\n\nRead this first.\n\nInstall\n\n- download\n- run setup\n\n"
                        "Option | Default\nport | 8080\n\nUse\n\nAsk.")
    assert [(doc.text[o:o + len(t)], lvl) for o, lvl, t in doc.headings] == [("Manual", 1), ("Install", 2), ("Use", 2)]


def test_docx_without_core_title_is_titled_by_its_first_heading(tmp_path, build_docx):
    path = build_docx(tmp_path / "a.docx", [("p", "preamble"), ("h1", "Chapter"), ("p", "x")])
    assert load_document(path).title == "Chapter"


def test_docx_title_style_is_the_title_and_the_top_of_the_heading_path(tmp_path, build_docx):
    path = build_docx(tmp_path / "a.docx", [("title", "Charter services"), ("p", "Intro."), ("h1", "Booking"),
                                            ("p", "Call us."), ("h2", "Deposits"), ("p", "20%.")])
    doc = load_document(path)
    assert doc.title == "Charter services"
    assert [(lvl, t) for _, lvl, t in doc.headings] == [(1, "Charter services"), (2, "Booking"), (3, "Deposits")]


def test_fake_docx_that_is_not_a_zip_is_rejected(tmp_path):
    path = tmp_path / "fake.docx"
    path.write_text("I am plain text pretending to be Word")
    assert "not a zip archive" in _error(path).reason


def test_zip_without_a_word_document_is_rejected(tmp_path):
    path = tmp_path / "archive.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "word/document.xml" in _error(path).reason


def test_legacy_binary_doc_renamed_docx_says_resave(tmp_path):
    path = tmp_path / "old.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    assert "save it as" in _error(path).reason


def test_docx_with_a_damaged_document_part_is_rejected(tmp_path, build_docx):
    good = build_docx(tmp_path / "good.docx", [("p", "text")])
    path = tmp_path / "bad.docx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, b"<w:document" if item.filename == "word/document.xml" else data)
    assert "corrupt" in _error(path).reason


# --- bad input common to all formats ------------------------------------------------------------

def test_missing_path_says_no_such_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.md").reason


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"data")
    reason = _error(path).reason
    assert "unsupported file type" in reason and ".pdf" in reason and ".docx" in reason


def test_directory_is_not_a_document(tmp_path):
    folder = tmp_path / "folder.md"
    folder.mkdir()
    assert "not a regular file" in _error(folder).reason


@pytest.mark.parametrize("name", ["a.txt", "a.md", "a.html", "a.pdf", "a.docx"])
def test_empty_file_is_rejected_for_every_format(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    assert "empty file" in _error(path).reason


@pytest.mark.parametrize("name", ["a.txt", "a.md", "a.html"])
def test_whitespace_only_text_file_is_rejected(tmp_path, name):
    path = tmp_path / name
    path.write_text("  \n\n\t \n")
    assert "nothing to ingest" in _error(path).reason


@pytest.mark.parametrize("name", ["image.txt", "data.md", "blob.html"])
def test_binary_file_with_a_text_extension_is_rejected(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    assert "binary" in _error(path).reason


def test_custom_source_names_the_file_in_errors(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"")
    assert _error(path, source="docs/a.txt").source == "docs/a.txt"


# --- hostile and oversized files --------------------------------------------------------------

def _padded_docx(path, build_docx, padding_mb: float):
    """A real .docx whose document.xml carries ``padding_mb`` of spaces in a comment: a few KB deflated."""
    source = build_docx(path.with_name("plain.docx"), [("h1", "Timetable"), ("p", "The ferry leaves at seven.")])
    with zipfile.ZipFile(source) as original:
        members = [(info, original.read(info)) for info in original.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info, data in members:
            if info.filename == "word/document.xml":
                head, _, rest = data.partition(b"?>")
                data = head + b"?><!--" + b" " * int(padding_mb * 1024 * 1024) + b"-->" + rest
            bomb.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_a_docx_inflating_past_max_inflated_mb_is_refused_naming_the_setting(tmp_path, build_docx):
    from ingest.limits import IngestLimits

    path = _padded_docx(tmp_path / "bomb.docx", build_docx, padding_mb=3)
    assert path.stat().st_size < 50_000
    error = _error(path, limits=IngestLimits(max_inflated_mb=2, max_compression_ratio=10_000))
    assert "ingest.max_inflated_mb" in error.reason and "refused" in error.reason


def test_a_docx_member_compressed_past_max_compression_ratio_is_refused_naming_it(tmp_path, build_docx):
    path = _padded_docx(tmp_path / "bomb.docx", build_docx, padding_mb=3)
    error = _error(path)  # the default limits
    assert "word/document.xml" in error.reason and "ingest.max_compression_ratio" in error.reason


def test_a_genuine_docx_within_the_limits_still_loads(tmp_path, build_docx):
    from ingest.limits import IngestLimits

    path = _padded_docx(tmp_path / "padded.docx", build_docx, padding_mb=0.5)  # under the 1 MiB ratio floor
    assert "ferry leaves at seven" in load_document(path, limits=IngestLimits(max_inflated_mb=2)).text


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html", ".pdf", ".docx"])
def test_a_file_over_max_file_mb_is_refused_before_it_is_read_naming_the_setting(tmp_path, suffix):
    from ingest.limits import IngestLimits

    path = tmp_path / f"big{suffix}"
    path.write_bytes(b"x" * 30_000)
    error = _error(path, limits=IngestLimits(max_file_mb=0.02))
    assert "over the limit of 0.02 MB (setting ingest.max_file_mb)" in error.reason
