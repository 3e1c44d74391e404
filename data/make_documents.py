"""Build the PDF and DOCX files of the Tallybird sample knowledge base.

The source text lives in ``data/sources/*.json`` (one file per document). Each source names
its output path relative to ``data/sample/``; the suffix (``.pdf`` or ``.docx``) picks the
writer. Run from the repository root, overwriting earlier outputs:

    python data/make_documents.py

The output is deterministic: PDFs are written in reportlab's invariant mode and DOCX files
get fixed core-property dates and fixed ZIP entry timestamps.

Source format: ``{"output", "title", "subject", "blocks"}`` where each block is a one-key
object: ``h1``/``h2``/``h3`` (heading text), ``p`` (paragraph), ``bullets``/``numbers``
(list of strings), ``table`` (``{"header": [...], "rows": [[...], ...]}``) or
``pagebreak``. Text may mark bold spans with ``**double asterisks**``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import docx
from docx.oxml.ns import qn
from docx.shared import Pt
from docx.text.paragraph import Paragraph as DocxParagraph
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    ListFlowable,
    ListItem,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

DATA_DIR = Path(__file__).resolve().parent
SOURCES_DIR = DATA_DIR / "sources"
SAMPLE_DIR = DATA_DIR / "sample"

AUTHOR = "Tallybird Labs"
FOOTER = "Tallybird Help Centre"
FIXED_DATETIME = dt.datetime(2024, 6, 3, 9, 0, 0, tzinfo=dt.UTC)
ZIP_DATETIME = (2024, 6, 3, 9, 0, 0)

BOLD_SPAN = re.compile(r"\*\*(.+?)\*\*")
HEADING_LEVELS = {"h1": 1, "h2": 2, "h3": 3}
BLOCK_KINDS = {"p", "h1", "h2", "h3", "bullets", "numbers", "table", "pagebreak"}

# Same bytes on every run: no timestamps or random document IDs in the PDFs.
rl_config.invariant = 1


# --------------------------------------------------------------------------- sources


def load_sources() -> list[dict[str, Any]]:
    """Read and validate every source document, sorted by file name."""
    documents = []
    for path in sorted(SOURCES_DIR.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for key in ("output", "title", "subject", "blocks"):
            if key not in document:
                raise ValueError(f"{path.name}: missing key {key!r}")
        for block in document["blocks"]:
            if len(block) != 1 or next(iter(block)) not in BLOCK_KINDS:
                raise ValueError(f"{path.name}: bad block {block!r}")
        documents.append(document)
    return documents


def split_bold(text: str) -> list[tuple[str, bool]]:
    """Split text into (segment, is_bold) pairs using ``**bold**`` markers."""
    parts = BOLD_SPAN.split(text)
    # re.split with one group alternates: plain, bold, plain, bold, ...
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


# --------------------------------------------------------------------------- PDF


def pdf_styles() -> StyleSheet1:
    styles = getSampleStyleSheet()
    styles["BodyText"].fontSize = 10
    styles["BodyText"].leading = 13
    styles["BodyText"].spaceAfter = 5
    styles["Heading1"].spaceBefore = 8
    styles["Heading2"].spaceBefore = 8
    styles["Heading3"].spaceBefore = 4
    for name in ("Heading1", "Heading2", "Heading3"):
        styles[name].keepWithNext = 1
    styles.add(
        ParagraphStyle(
            "TableCell", parent=styles["BodyText"], fontSize=9, leading=12, alignment=TA_LEFT
        )
    )
    styles.add(ParagraphStyle("TableHead", parent=styles["TableCell"], fontName="Helvetica-Bold"))
    return styles


def pdf_markup(text: str) -> str:
    """Escape text for a reportlab Paragraph and turn ``**x**`` into bold."""
    return BOLD_SPAN.sub(r"<b>\1</b>", escape(text))


def pdf_list(items: list[str], numbered: bool, styles: StyleSheet1) -> ListFlowable:
    entries = [ListItem(Paragraph(pdf_markup(item), styles["BodyText"])) for item in items]
    if numbered:
        return ListFlowable(entries, bulletType="1", bulletFormat="%s.", leftIndent=18)
    # An en dash rather than U+2022: reportlab encodes the bullet glyph as byte 0x7F, which
    # text extractors return as a control character.
    return ListFlowable(entries, bulletType="bullet", start="\u2013", leftIndent=18)


def pdf_table(spec: dict[str, Any], styles: StyleSheet1, width: float) -> Table:
    header = [Paragraph(pdf_markup(cell), styles["TableHead"]) for cell in spec["header"]]
    rows = [
        [Paragraph(pdf_markup(cell), styles["TableCell"]) for cell in row] for row in spec["rows"]
    ]
    columns = len(spec["header"])
    table = Table([header, *rows], colWidths=[width / columns] * columns, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDE7F0")),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#8899AA")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    return table


def build_pdf(document: dict[str, Any], path: Path) -> None:
    styles = pdf_styles()
    template = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
        title=document["title"],
        author=AUTHOR,
        subject=document["subject"],
        creator=AUTHOR,
    )
    story: list[Flowable] = [Paragraph(pdf_markup(document["title"]), styles["Title"])]
    for block in document["blocks"]:
        kind, value = next(iter(block.items()))
        if kind in HEADING_LEVELS:
            story.append(Paragraph(pdf_markup(value), styles[f"Heading{HEADING_LEVELS[kind]}"]))
        elif kind == "p":
            story.append(Paragraph(pdf_markup(value), styles["BodyText"]))
        elif kind in ("bullets", "numbers"):
            story.append(pdf_list(value, kind == "numbers", styles))
            story.append(Spacer(1, 4))
        elif kind == "table":
            story.append(pdf_table(value, styles, template.width))
            story.append(Spacer(1, 8))
        elif kind == "pagebreak":
            story.append(PageBreak())

    def footer(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.HexColor("#556677"))
        canvas.drawString(doc.leftMargin, 10 * mm, f"{FOOTER} \u2013 {document['title']}")
        canvas.drawRightString(
            doc.leftMargin + doc.width, 10 * mm, f"Page {canvas.getPageNumber()}"
        )
        canvas.restoreState()

    template.build(story, onFirstPage=footer, onLaterPages=footer)


# --------------------------------------------------------------------------- DOCX


def docx_runs(paragraph: DocxParagraph, text: str) -> None:
    for segment, bold in split_bold(text):
        run = paragraph.add_run(segment)
        run.bold = bold or None


def docx_restart_numbering(document: Any, paragraphs: list[DocxParagraph]) -> None:
    """Give a numbered list its own numbering instance so it starts again at 1."""
    numbering = document.part.numbering_part.element
    style_num_id = document.styles["List Number"].element.pPr.numPr.numId.val
    abstract_id = numbering.num_having_numId(style_num_id).abstractNumId.val
    num = numbering.add_num(abstract_id)
    num.add_lvlOverride(ilvl=0).add_startOverride(1)
    for paragraph in paragraphs:
        num_pr = paragraph._p.get_or_add_pPr().get_or_add_numPr()
        num_pr.get_or_add_ilvl().val = 0
        num_pr.get_or_add_numId().val = num.numId


def docx_table(document: Any, spec: dict[str, Any]) -> None:
    columns = len(spec["header"])
    table = document.add_table(rows=1, cols=columns)
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, spec["header"], strict=True):
        cell.text = ""
        run = cell.paragraphs[0].add_run(text)
        run.bold = True
    # Mark the first row as a header row (repeats on each page, read as a header).
    tr_pr = table.rows[0]._tr.get_or_add_trPr()
    header_flag = tr_pr.makeelement(qn("w:tblHeader"), {})
    tr_pr.append(header_flag)
    for row in spec["rows"]:
        cells = table.add_row().cells
        for cell, text in zip(cells, row, strict=True):
            cell.text = ""
            docx_runs(cell.paragraphs[0], text)
    document.add_paragraph()


def normalise_zip(data: bytes) -> bytes:
    """Rewrite a ZIP archive with fixed entry timestamps so the bytes are reproducible."""
    source = zipfile.ZipFile(io.BytesIO(data))
    target_buffer = io.BytesIO()
    with zipfile.ZipFile(target_buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_DATETIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            target.writestr(entry, source.read(info.filename))
    return target_buffer.getvalue()


def build_docx(document_spec: dict[str, Any], path: Path) -> None:
    document = docx.Document()
    document.styles["Normal"].font.size = Pt(11)
    document.add_heading(document_spec["title"], level=0)
    for block in document_spec["blocks"]:
        kind, value = next(iter(block.items()))
        if kind in HEADING_LEVELS:
            document.add_heading(value, level=HEADING_LEVELS[kind])
        elif kind == "p":
            docx_runs(document.add_paragraph(), value)
        elif kind == "bullets":
            for item in value:
                docx_runs(document.add_paragraph(style="List Bullet"), item)
        elif kind == "numbers":
            items = []
            for item in value:
                paragraph = document.add_paragraph(style="List Number")
                docx_runs(paragraph, item)
                items.append(paragraph)
            docx_restart_numbering(document, items)
        elif kind == "table":
            docx_table(document, value)
        elif kind == "pagebreak":
            document.add_page_break()

    properties = document.core_properties
    properties.title = document_spec["title"]
    properties.subject = document_spec["subject"]
    properties.author = AUTHOR
    properties.last_modified_by = AUTHOR
    properties.comments = ""
    properties.keywords = "Tallybird, help centre"
    properties.revision = 1
    properties.created = FIXED_DATETIME
    properties.modified = FIXED_DATETIME
    properties.last_printed = FIXED_DATETIME

    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(normalise_zip(buffer.getvalue()))


# --------------------------------------------------------------------------- main


def main() -> int:
    for document in load_sources():
        output = SAMPLE_DIR / document["output"]
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix == ".pdf":
            build_pdf(document, output)
        elif output.suffix == ".docx":
            build_docx(document, output)
        else:
            raise ValueError(f"unsupported output type: {document['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
