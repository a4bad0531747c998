"""Every CSV file the app writes goes through here, so no cell can be run as a spreadsheet formula.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel, LibreOffice
and Google Sheets as a formula (``=HYPERLINK(...)`` in a file name is enough). Such a cell gets a leading
apostrophe, which spreadsheets show as plain text. Numbers (``-0.25``, ``-1e-05``) are left as they are:
they are values, not formulas, and an apostrophe would turn them into text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """``value`` as CSV cell text that a spreadsheet shows as written and never evaluates."""
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if not text.startswith(_FORMULA_STARTS) or _is_number(text):
        return text
    return "'" + text


def csv_text(header: Iterable, rows: Iterable[Iterable], *, line_end: str = "\n") -> str:
    """The whole CSV document: the header and the rows, every cell through ``safe_cell``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow([safe_cell(cell) for cell in header])
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text  # "-1\t" would still be a number to Python, not to a spreadsheet
