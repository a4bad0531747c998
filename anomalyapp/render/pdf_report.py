"""A ``ReportData`` laid out as a multi-page A4 PDF with ``QPdfWriter``, ``QPainter`` and ``QTextDocument``.

Pages: a header line (project, report title) and a footer (generated when and by what, page n of N) on
every page; the body flows through a ``QTextDocument``: title and period, key figures, the confusion matrix
of verdicts against confirmed labels, counts per day (with a stacked bar chart when there is more than one
day), the findings table (its header repeated on each page) and a grid of thumbnails with captions.

The PDF is rendered into memory and then written atomically (temporary file beside it + ``os.replace``).
Qt needs a ``QGuiApplication``: an existing one is used; otherwise one is created, on the offscreen
platform when there is no display.
"""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, QMarginsF, QPointF, QRectF, QSizeF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
    QTextDocument,
)

from anomalyapp.core.colours import VERDICT_COLOURS
from anomalyapp.core.errors import AppError
from anomalyapp.core.files import write_atomically
from anomalyapp.core.image_names import shown_name
from anomalyapp.services.reports import ReportData, Thumbnail

DPI = 300
MM = DPI / 25.4  # device pixels per millimetre
PAGE_W_MM, PAGE_H_MM = 210.0, 297.0
MARGIN_MM = 16.0
BODY_TOP_MM, BODY_BOTTOM_MM = 24.0, 18.0  # body area: below the header, above the footer
CSS_PX_PER_MM = 96 / 25.4  # sizes in the HTML are CSS pixels (1/96 inch), scaled by Qt to the device
THUMB_COLUMNS = 4
THUMB_ROWS_PER_PAGE = 5  # with the 4:3 picture box and two caption lines, five rows fill a page

INK = "#1d2733"
MUTED = "#5b6b7c"
ACCENT = "#1f4e79"
RULE = "#c8d1db"
HEAD_BG = "#e9eef4"
ZEBRA = "#f6f8fa"
COLOURS = {verdict: colour.ink for verdict, colour in VERDICT_COLOURS.items()}  # verdicts as text on paper
FONT_PREFERENCE = ("Segoe UI", "Helvetica Neue", "Arial", "Liberation Sans", "DejaVu Sans", "Noto Sans")

_APP = None  # a QGuiApplication this module created, kept alive


def ensure_gui_application() -> QGuiApplication:
    """The running QGuiApplication, or a new one (offscreen when there is no display)."""
    global _APP
    app = QGuiApplication.instance()
    if app is None:
        headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if headless and not os.environ.get("QT_QPA_PLATFORM"):
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        app = _APP = QGuiApplication([sys.argv[0] if sys.argv and sys.argv[0] else "anomalyapp"])
    elif not isinstance(app, QGuiApplication):
        raise AppError("cannot draw a PDF report inside a console-only Qt application")
    return app


def write_pdf(report: ReportData, path: str | os.PathLike) -> Path:
    """Render ``report`` as an A4 PDF at ``path`` (written atomically); returns the path."""
    return write_atomically(path, render_pdf(report))


def render_pdf(report: ReportData) -> bytes:
    """The PDF file's bytes."""
    ensure_gui_application()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageOrientation(QPageLayout.Orientation.Portrait)
    writer.setPageMargins(QMarginsF(0, 0, 0, 0), QPageLayout.Unit.Millimeter)
    writer.setResolution(DPI)
    writer.setTitle(f"{report.title} – {report.project} – {report.period}")
    writer.setCreator(report.software)

    family = _font_family()
    body_w = (PAGE_W_MM - 2 * MARGIN_MM) * MM
    body_h = (PAGE_H_MM - BODY_TOP_MM - BODY_BOTTOM_MM) * MM
    doc = QTextDocument()
    doc.documentLayout().setPaintDevice(writer)
    font = QFont(family)
    font.setPointSizeF(8.5)
    doc.setDefaultFont(font)
    doc.setDocumentMargin(0)
    doc.setPageSize(QSizeF(body_w, body_h))
    _add_images(doc, report)
    doc.setHtml(_html(report, family, _Fitter(family, writer, body_w)))
    pages = doc.pageCount()

    painter = QPainter()
    if not painter.begin(writer):
        raise AppError("cannot start drawing the PDF report")
    try:
        for page in range(pages):
            if page:
                writer.newPage()
            painter.save()
            painter.translate(MARGIN_MM * MM, BODY_TOP_MM * MM - page * body_h)
            doc.drawContents(painter, QRectF(0, page * body_h, body_w, body_h))
            painter.restore()
            _header_footer(painter, report, family, page + 1, pages)
    finally:
        painter.end()
    buffer.close()
    return bytes(buffer.data().data())


# --------------------------------------------------------------------------------------------------
# page furniture


def _font_family() -> str:
    available = set(QFontDatabase.families())
    for family in FONT_PREFERENCE:
        if family in available:
            return family
    return QFont().family()


def _header_footer(painter: QPainter, report: ReportData, family: str, page: int, pages: int) -> None:
    left, right = MARGIN_MM * MM, (PAGE_W_MM - MARGIN_MM) * MM
    painter.save()
    small = QFont(family)
    small.setPointSizeF(7.5)
    bold = QFont(small)
    bold.setBold(True)
    # header: project on the left, title and period on the right, a rule below
    top = 10 * MM
    box = QRectF(left, top, right - left, 6 * MM)
    painter.setPen(QColor(ACCENT))
    painter.setFont(bold)
    project = painter.fontMetrics().elidedText(report.project, Qt.TextElideMode.ElideRight, round(box.width() * 0.42))
    painter.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, project)
    painter.setPen(QColor(MUTED))
    painter.setFont(small)
    title = painter.fontMetrics().elidedText(f"{report.title} · {report.period}", Qt.TextElideMode.ElideRight,
                                             round(box.width() * 0.56))
    painter.drawText(box, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, title)
    painter.setPen(QPen(QColor(RULE), 0.3 * MM))
    painter.drawLine(QPointF(left, top + 7 * MM), QPointF(right, top + 7 * MM))
    # footer: a rule, generated-by on the left, page n of N on the right
    bottom = (PAGE_H_MM - 12) * MM
    painter.drawLine(QPointF(left, bottom), QPointF(right, bottom))
    box = QRectF(left, bottom + 1 * MM, right - left, 5 * MM)
    painter.setPen(QColor(MUTED))
    generated = report.generated_at.strftime("%Y-%m-%d %H:%M")
    painter.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                     f"Generated {generated} by {report.software}")
    painter.drawText(box, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"Page {page} of {pages}")
    painter.restore()


# --------------------------------------------------------------------------------------------------
# images


def _qimage(pixels: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(pixels[:, :, :3], dtype=np.uint8)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def _placeholder(size: int = 240) -> QImage:
    image = QImage(size, round(size * 0.75), QImage.Format.Format_RGB32)
    image.fill(QColor("#eef1f4"))
    painter = QPainter(image)
    painter.setPen(QColor(MUTED))
    font = QFont(_font_family())
    font.setPixelSize(16)
    painter.setFont(font)
    painter.drawText(image.rect(), Qt.AlignmentFlag.AlignCenter, "image not available")
    painter.end()
    return image


def _add_images(doc: QTextDocument, report: ReportData) -> None:
    for index, thumb in enumerate(report.thumbnails):
        image = _qimage(thumb.pixels) if thumb.pixels is not None else _placeholder()
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"thumb://{index}"), image)
    if len(report.days) > 1:
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl("chart://daily"), _daily_chart(report))


def _daily_chart(report: ReportData, width: int = 2000, height: int = 520) -> QImage:
    """Stacked bars per day (OK, Review, NG) with the NG rate written above days that have NG."""
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    family = _font_family()
    font = QFont(family)
    font.setPixelSize(26)
    painter.setFont(font)
    left, right, top, bottom = 90, 20, 60, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((d.total for d in report.days), default=0) or 1
    step = _nice_step(peak / 4)
    axis_max = step * int(np.ceil(peak / step))
    painter.setPen(QPen(QColor("#e3e8ee"), 1))
    for k in range(0, int(axis_max / step) + 1):
        y = top + plot_h - plot_h * k * step / axis_max
        painter.setPen(QPen(QColor("#e3e8ee"), 1))
        painter.drawLine(QPointF(left, y), QPointF(left + plot_w, y))
        painter.setPen(QColor(MUTED))
        painter.drawText(QRectF(0, y - 14, left - 12, 28), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                         f"{k * step:,.0f}")
    n = len(report.days)
    slot = plot_w / n
    bar = slot * 0.7
    label_every = max(1, int(np.ceil(n / 16)))
    for i, day in enumerate(report.days):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for count, colour in ((day.ok, COLOURS["OK"]), (day.review, COLOURS["Review"]), (day.ng, COLOURS["NG"])):
            if count:
                h = plot_h * count / axis_max
                painter.fillRect(QRectF(x, y - h, bar, h), QColor(colour))
                y -= h
        if i % label_every == 0:
            painter.setPen(QColor(MUTED))
            painter.drawText(QRectF(left + i * slot - 30, top + plot_h + 8, slot + 60, 28),
                             Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, day.day.strftime("%d %b"))
    painter.setPen(QPen(QColor(INK), 2))
    painter.drawLine(QPointF(left, top + plot_h), QPointF(left + plot_w, top + plot_h))
    # legend
    x = left
    for name in ("OK", "Review", "NG"):
        painter.fillRect(QRectF(x, 12, 26, 26), QColor(COLOURS[name]))
        painter.setPen(QColor(INK))
        painter.drawText(QRectF(x + 36, 6, 140, 38), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        x += 170
    painter.setPen(QColor(MUTED))
    painter.drawText(QRectF(x + 20, 6, 800, 38), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                     "inspections per day, by verdict")
    painter.end()
    return image


def _nice_step(raw: float) -> float:
    magnitude = 10 ** np.floor(np.log10(max(raw, 1e-9)))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return max(1.0, factor * magnitude)
    return max(1.0, 10 * magnitude)


# --------------------------------------------------------------------------------------------------
# the body as Qt rich text


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _int(value: int) -> str:
    return f"{value:,}".replace(",", "\u202f")  # thin no-break space between thousands


def _verdict(verdict: str | None) -> str:
    if not verdict:
        return f'<span style="color:{MUTED}">–</span>'
    return f'<span style="color:{COLOURS.get(verdict, INK)}; font-weight:600">{_e(verdict)}</span>'


def _html(report: ReportData, family: str, fit: _Fitter) -> str:
    parts = [
        f'<html><body style="font-family:\'{family}\'; color:{INK}">',
        f'<p style="font-size:20pt; font-weight:600; color:{ACCENT}; margin:0">{_e(report.title)}</p>',
        f'<p style="font-size:11pt; color:{MUTED}; margin-top:2px; margin-bottom:2px">'
        f'{_e(report.project)} &nbsp;·&nbsp; {_e(report.period)}</p>',
    ]
    filters = ", ".join(report.filters) if report.filters else "none"
    parts.append(f'<p style="color:{MUTED}; margin-top:0; margin-bottom:10px">Filters: {_e(filters)}</p>')
    parts.append(_key_figures(report))
    parts.append(_confusion(report))
    if len(report.days) > 1:
        parts.append(_daily(report))
    parts.append(_rows(report, fit))
    if report.thumbnails:
        parts.append(_thumbnails(report, fit))
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(title: str, note: str = "", break_before: bool = False) -> str:
    style = "page-break-before:always; " if break_before else ""
    out = (f'<p style="{style}font-size:12pt; font-weight:600; color:{ACCENT}; margin-top:16px; margin-bottom:4px">'
           f'{_e(title)}</p>')
    if note:
        out += f'<p style="color:{MUTED}; margin-top:0; margin-bottom:6px">{note}</p>'
    return out


def _key_figures(report: ReportData) -> str:
    s = report.summary
    tiles = [
        ("Inspected", _int(s.total), INK),
        ("OK", _int(s.by_verdict.get("OK", 0)), COLOURS["OK"]),
        ("Review", _int(s.by_verdict.get("Review", 0)), COLOURS["Review"]),
        ("NG", _int(s.by_verdict.get("NG", 0)), COLOURS["NG"]),
        ("NG rate", _pct(s.ng_rate), COLOURS["NG"] if s.ng_rate else INK),
        ("Labelled", _int(s.labelled), INK),
    ]
    cells = "".join(
        f'<td width="16.6%" align="center" bgcolor="{ZEBRA}" style="border:1px solid {RULE}; padding:6px">'
        f'<span style="font-size:15pt; font-weight:600; color:{colour}">{value}</span><br/>'
        f'<span style="color:{MUTED}">{name}</span></td>'
        for name, value, colour in tiles
    )
    return (f'<table width="100%" cellspacing="4" cellpadding="0" style="border-collapse:separate">'
            f"<tr>{cells}</tr></table>")


def _table(headers: list[tuple[str, str]], rows: list[list[str]], widths: list[str] | None = None,
           styles: list[str] | None = None) -> str:
    """A ruled table; ``headers`` are (text, align); ``styles`` an extra CSS per row (e.g. bold totals)."""
    head = "".join(
        f'<th align="{align}" bgcolor="{HEAD_BG}"{f" width={widths[i]!r}" if widths else ""} '
        f'style="padding:3px 5px; border-bottom:1px solid {RULE}; color:{INK}; font-weight:600; '
        f'white-space:nowrap">{text}</th>'
        for i, (text, align) in enumerate(headers)
    )
    body = []
    for r, row in enumerate(rows):
        background = f' bgcolor="{ZEBRA}"' if r % 2 else ""
        extra = styles[r] if styles and styles[r] else ""
        cells = "".join(
            f'<td align="{headers[i][1]}"{background} style="padding:2px 5px; border-bottom:1px solid #e3e8ee; '
            f'white-space:nowrap;{extra}">'
            f"{cell}</td>"
            for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (f'<table width="100%" cellspacing="0" cellpadding="0" style="border-collapse:collapse; '
            f'border:1px solid {RULE}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _confusion(report: ReportData) -> str:
    s = report.summary
    verdicts = ("OK", "Review", "NG")
    rows, styles = [], []
    for label in ("OK", "NG"):
        counts = s.confusion.get(label, {})
        cells = []
        for v in verdicts:
            n = counts.get(v, 0)
            wrong = (label == "OK" and v == "NG") or (label == "NG" and v == "OK")
            cells.append(f'<span style="color:{COLOURS["NG"]}; font-weight:600">{_int(n)}</span>' if wrong and n
                         else _int(n))
        rows.append([f"Labelled {label}", *cells, _int(sum(counts.values()))])
        styles.append("")
    unlabelled = [s.by_verdict.get(v, 0) - sum(s.confusion.get(lab, {}).get(v, 0) for lab in ("OK", "NG"))
                  for v in verdicts]
    rows.append(["Unlabelled", *map(_int, unlabelled), _int(sum(unlabelled))])
    styles.append("")
    rows.append(["Total", *(_int(s.by_verdict.get(v, 0)) for v in verdicts), _int(s.total)])
    styles.append(" font-weight:600;")
    table = _table([("", "left"), ("Verdict OK", "right"), ("Verdict Review", "right"), ("Verdict NG", "right"),
                    ("Total", "right")], rows, ["28%", "18%", "18%", "18%", "18%"], styles)
    (tn, fp), (fn, tp) = s.matrix
    if s.labelled:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        note = (f"On the {_int(s.labelled)} labelled inspections: precision {_pct(precision)}, recall {_pct(recall)}; "
                f"<b>{_int(s.false_rejects)}</b> false reject(s) (labelled OK, judged NG) and "
                f"<b>{_int(s.escapes)}</b> escape(s) (labelled NG, judged OK). Review counts as not rejected.")
    else:
        note = "No inspection in this period has been labelled yet, so verdicts cannot be checked against labels."
    return (_section("Verdicts against confirmed labels") + table
            + f'<p style="color:{MUTED}; margin-top:4px">{note}</p>')


def _daily(report: ReportData) -> str:
    rows, styles = [], []
    for d in report.days:
        quiet = d.total == 0
        rows.append([d.day.strftime("%a %Y-%m-%d"), _int(d.total), _int(d.ok), _int(d.review), _int(d.ng),
                     _pct(d.ng_rate) if d.total else "–", _int(d.labelled_ok), _int(d.labelled_ng)])
        styles.append(f" color:{MUTED};" if quiet else "")
    table = _table([("Day", "left"), ("Inspected", "right"), ("OK", "right"), ("Review", "right"), ("NG", "right"),
                    ("NG rate", "right"), ("Labelled OK", "right"), ("Labelled NG", "right")], rows,
                   ["18%", "11%", "10%", "10%", "10%", "11%", "15%", "15%"], styles)
    chart_w = round((PAGE_W_MM - 2 * MARGIN_MM) * CSS_PX_PER_MM)
    chart = f'<p style="margin-top:2px; margin-bottom:6px"><img src="chart://daily" width="{chart_w}" height="{round(chart_w * 0.26)}"/></p>'
    return _section("Inspections per day") + chart + table


def _rows(report: ReportData, fit: _Fitter) -> str:
    if not report.rows:
        return _section(report.rows_title) + f'<p style="color:{MUTED}">None in this period.</p>'
    multi_day = len({r.inspected_at.astimezone().date() for r in report.rows}) > 1 or len(report.days) > 1
    fmt = "%m-%d %H:%M:%S" if multi_day else "%H:%M:%S"
    widths = [14, 25, 7, 9, 7, 17, 7, 14]  # per cent of the body width
    rows = []
    for r in report.rows:
        version = f"v{r.model_version_id}" if r.model_version_id else "–"
        label = report.labels.get(r.id)
        note = label.note if label else ""
        labeller = report.users.get(label.user_id, "–") if label else ""
        rows.append([
            _e(r.inspected_at.astimezone().strftime(fmt)), _e(fit.path(shown_name(r.image_path), widths[1])),
            f"{r.score:.3f}", _verdict(r.verdict), _verdict(r.label), _e(fit(note, widths[5])), version,
            _e(fit(labeller, widths[7])),
        ])
    table = _table([("Time", "left"), ("File", "left"), ("Score", "right"), ("Verdict", "left"), ("Label", "left"),
                    ("Note", "left"), ("Model", "left"), ("Labelled by", "left")], rows,
                   [f"{w}%" for w in widths])
    shown = len(report.rows)
    note = (f"{_int(report.rows_total)} in total; the first {_int(shown)} are listed, the CSV export has them all."
            if report.rows_total > shown else f"{_int(shown)} in total.")
    used = sorted({r.model_version_id for r in report.rows if r.model_version_id})
    legend = "; ".join(_e(report.versions[v]) for v in used if v in report.versions)
    if legend:
        note += f" Models: {legend}."
    return (_section(report.rows_title, note) + table)


def _thumbnails(report: ReportData, fit: _Fitter) -> str:
    cell_w = round((PAGE_W_MM - 2 * MARGIN_MM) * CSS_PX_PER_MM / THUMB_COLUMNS) - 12
    cells = []
    for index, thumb in enumerate(report.thumbnails):
        width, height = _thumb_size(thumb, cell_w)
        label = f" · labelled {_verdict(thumb.label)}" if thumb.label else ""
        cells.append(
            f'<td align="center" valign="top" width="25%" style="padding:4px">'
            f'<img src="thumb://{index}" width="{width}" height="{height}"/><br/>'
            f'<span style="font-size:7.5pt; white-space:nowrap">'
            f'{_e(fit.path(thumb.file_name, 100 / THUMB_COLUMNS, points=7.5))}</span><br/>'
            f'<span style="font-size:7.5pt">{_verdict(thumb.verdict)} · {thumb.score:.3f}{label}</span></td>'
        )
    while len(cells) % THUMB_COLUMNS:
        cells.append('<td width="25%"></td>')
    rows = [f"<tr>{''.join(cells[i:i + THUMB_COLUMNS])}</tr>" for i in range(0, len(cells), THUMB_COLUMNS)]
    overlays = any(t.overlay for t in report.thumbnails)
    note = ("Highest-scoring findings, NG first, each part once" + (", with the anomaly heat map" if overlays else "")
            + "; a painted defect region is outlined in magenta."
            + (f" Without heat map: {report.thumbnail_note}." if report.thumbnail_note else ""))
    # A fixed number of rows per page, each page its own table: Qt would otherwise split a row between
    # its pictures and their captions at a page end.
    pages = [rows[i:i + THUMB_ROWS_PER_PAGE] for i in range(0, len(rows), THUMB_ROWS_PER_PAGE)]
    out = _section("Images", _e(note), break_before=True)
    for index, page in enumerate(pages):
        style = ' style="page-break-before:always"' if index else ""
        out += f'<table width="100%" cellspacing="4" cellpadding="0"{style}>{"".join(page)}</table>'
    return out


def _thumb_size(thumb: Thumbnail, cell_w: int) -> tuple[int, int]:
    if thumb.pixels is None:
        return cell_w, round(cell_w * 0.75)
    height, width = thumb.pixels.shape[:2]
    box_h = round(cell_w * 0.75)
    scale = min(cell_w / width, box_h / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _Fitter:
    """Shortens text with an ellipsis to fit a table column, measured with the PDF's own font metrics."""

    PADDING_CSS_PX = 14  # cell padding on both sides plus the rule

    def __init__(self, family: str, device: QPdfWriter, body_w: float):
        self.family, self.device, self.body_w = family, device, body_w
        self._metrics: dict[float, QFontMetricsF] = {}

    def __call__(self, text: str, percent: float, *, points: float = 8.5) -> str:
        if not text:
            return text
        metrics, width = self._room(percent, points)
        return metrics.elidedText(text, Qt.TextElideMode.ElideRight, width)

    def path(self, text: str, percent: float, *, points: float = 8.5) -> str:
        """'folder/name' fitted to a column. The file name is what tells one part from the next (kos05_Part5.jpg,
        kos06_Part5.jpg), so the folder is shortened first ('…ect/kos05_Part5.jpg'), and the name, in its middle,
        only when it does not fit alone."""
        metrics, width = self._room(percent, points)
        folder, slash, name = text.rpartition("/")
        if metrics.horizontalAdvance(text) <= width:
            return text
        if not slash or metrics.horizontalAdvance("…/" + name) > width:
            return metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, width)
        room = width - metrics.horizontalAdvance(name)
        return metrics.elidedText(folder + "/", Qt.TextElideMode.ElideLeft, room) + name

    def _room(self, percent: float, points: float) -> tuple[QFontMetricsF, float]:
        """The font's metrics at ``points`` and the width a column of ``percent`` of the body leaves for text."""
        metrics = self._metrics.get(points)
        if metrics is None:
            font = QFont(self.family)
            font.setPointSizeF(points)
            metrics = self._metrics[points] = QFontMetricsF(font, self.device)
        return metrics, max(self.body_w * percent / 100 - self.PADDING_CSS_PX * DPI / 96, 1.0)
