"""What both PDFs share (the compliance report and a person's access extract): fonts,
styles, page furniture and a small table helper.

ReportLab, not WeasyPrint: ReportLab is pure Python plus wheels and needs no system
libraries, while WeasyPrint needs pango (and through it cairo, harfbuzz, fontconfig)
installed on the machine, so with ReportLab ``pip install .`` is enough in a slim
container image. The fonts are the Bitstream Vera family that ReportLab ships in its
own package (nothing downloaded, nothing read from the system), embedded in every PDF;
Vera covers Latin-1, so Norwegian, Danish, German and Dutch text (æ ø å ß ü ë) prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Final
from xml.sax.saxutils import escape

import reportlab
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import BaseDocTemplate, Flowable, Frame, PageTemplate, Paragraph, Table, TableStyle

FONT: Final = "KonsilVera"
FONT_BOLD: Final = "KonsilVera-Bold"
FONT_ITALIC: Final = "KonsilVera-Italic"
FONT_BOLD_ITALIC: Final = "KonsilVera-BoldItalic"

PAGE: Final = A4
MARGIN: Final = 18 * mm
INK: Final = colors.HexColor("#1f2933")
MUTED: Final = colors.HexColor("#52606d")
RULE: Final = colors.HexColor("#cbd2d9")
SHADE: Final = colors.HexColor("#f0f4f8")

STATUS_COLOURS: Final[dict[str, Any]] = {
    "pass": colors.HexColor("#1b7f3b"),
    "fail": colors.HexColor("#b3261e"),
    "attested": colors.HexColor("#1f5fa8"),
    "not_attested": colors.HexColor("#a15c00"),
    "not_applicable": colors.HexColor("#616e7c"),
}

_registered = False


def register_fonts() -> None:
    """Register ReportLab's own Vera TrueType fonts once per process (embedded as subsets)."""
    global _registered
    if _registered:
        return
    folder = Path(reportlab.__file__).parent / "fonts"
    for name, file in (
        (FONT, "Vera.ttf"),
        (FONT_BOLD, "VeraBd.ttf"),
        (FONT_ITALIC, "VeraIt.ttf"),
        (FONT_BOLD_ITALIC, "VeraBI.ttf"),
    ):
        pdfmetrics.registerFont(TTFont(name, str(folder / file)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT_ITALIC, boldItalic=FONT_BOLD_ITALIC)
    _registered = True


def styles() -> dict[str, ParagraphStyle]:
    register_fonts()
    body = ParagraphStyle("body", fontName=FONT, fontSize=9.5, leading=13, textColor=INK, alignment=TA_LEFT)
    return {
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=8, leading=10.5, textColor=MUTED),
        "cell": ParagraphStyle("cell", parent=body, fontSize=8.5, leading=11),
        "cell_bold": ParagraphStyle("cell_bold", parent=body, fontName=FONT_BOLD, fontSize=8.5, leading=11),
        "hash": ParagraphStyle("hash", parent=body, fontSize=7.5, leading=9.5, textColor=MUTED),
        "title": ParagraphStyle("title", parent=body, fontName=FONT_BOLD, fontSize=22, leading=28, spaceAfter=6),
        "subtitle": ParagraphStyle("subtitle", parent=body, fontSize=13, leading=18, textColor=MUTED, spaceAfter=18),
        "h1": ParagraphStyle(
            "h1", parent=body, fontName=FONT_BOLD, fontSize=14, leading=18, spaceBefore=6, spaceAfter=8
        ),
        "h2": ParagraphStyle(
            "h2", parent=body, fontName=FONT_BOLD, fontSize=11, leading=15, spaceBefore=10, spaceAfter=4
        ),
    }


def text(value: str) -> str:
    """Plain text made safe for ReportLab's paragraph markup."""
    return escape(value)


def para(value: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(text(value), style)


def grid(
    data: list[list[Any]], widths: list[float], *, header: bool = True, zebra: bool = False, repeat: bool = True
) -> Table:
    table = Table(data, colWidths=widths, repeatRows=1 if header and repeat else 0, hAlign="LEFT")
    commands: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 0), (-1, -1), FONT),  # else the cells' default, Helvetica, unembedded
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), SHADE))
        commands.append(("LINEBELOW", (0, 0), (-1, 0), 0.8, MUTED))
    if zebra:
        for row in range(2 if header else 1, len(data), 2):
            commands.append(("BACKGROUND", (0, row), (-1, row), colors.HexColor("#fafbfc")))
    table.setStyle(TableStyle(commands))
    return table


def fit(value: str, width: float, size: float) -> str:
    """``value`` cut with an ellipsis to fit ``width`` points in the body font."""
    if pdfmetrics.stringWidth(value, FONT, size) <= width:
        return value
    while value and pdfmetrics.stringWidth(value + "…", FONT, size) > width:
        value = value[:-1]
    return value.rstrip() + "…"


def content_width() -> float:
    return float(PAGE[0] - 2 * MARGIN)


class NumberedCanvas(Canvas):  # type: ignore[misc]  # ReportLab ships no type hints
    """Draws "page N of M" and a footer line on every page: the pages are kept until
    the end, when M is known. Footer text is set per document with ``footer``."""

    footer_text = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Start every page in the embedded font: ReportLab's default (Helvetica) would
        # otherwise be referenced, unembedded, on each page.
        register_fonts()
        kwargs["initialFontName"] = kwargs.get("initialFontName") or FONT
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self._draw_footer(total)
            super().showPage()
        super().save()

    def _draw_footer(self, total: int) -> None:
        register_fonts()
        self.saveState()
        self.setFont(FONT, 7.5)
        self.setFillColor(MUTED)
        self.setStrokeColor(RULE)
        self.line(MARGIN, 12 * mm, PAGE[0] - MARGIN, 12 * mm)
        page = f"Page {self._pageNumber} of {total}"
        room = PAGE[0] - 2 * MARGIN - pdfmetrics.stringWidth(page, FONT, 7.5) - 6 * mm
        self.drawString(MARGIN, 8 * mm, fit(self.footer_text, room, 7.5))
        self.drawRightString(PAGE[0] - MARGIN, 8 * mm, page)
        self.restoreState()


def build(out: IO[bytes], story: list[Flowable], *, title: str, author: str, subject: str, footer: str) -> None:
    """Lay out ``story`` on A4 pages with the footer and write the PDF to ``out``."""
    register_fonts()
    doc = BaseDocTemplate(
        out,
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 4 * mm,
        title=title,
        author=author,
        subject=subject,
        creator="Konsil",
        producer="Konsil (ReportLab)",
    )
    frame = Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="body", leftPadding=0, rightPadding=0)
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame])])

    class _Canvas(NumberedCanvas):
        footer_text = footer

    doc.build(story, canvasmaker=_Canvas)
