"""The results as a Qt table model: one row per inspected image, re-judged instantly when the threshold moves.

``ResultsModel`` keeps every image result with its normalised score (the calibrated threshold is 0.5).
Verdicts are not stored with the results: they are recomputed from the scores by a ``Verdicts`` rule, so
moving the threshold re-judges thousands of rows in a few milliseconds without running the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPixmap

from anomalyapp.core.colours import VERDICT_COLOURS
from anomalyapp.core.image_names import folder_of
from anomalyapp.core.verdicts import SEVERITY, Verdict, Verdicts

#: The four verdicts, most severe first.
VERDICTS = tuple(Verdict)

#: Sort key of each column (numbers for Score and Verdict), used by ResultsFilter.
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
#: The ResultRow behind an index, for any column.
ROW_ROLE = Qt.ItemDataRole.UserRole + 2
#: The verdict string of a row, for any column.
VERDICT_ROLE = Qt.ItemDataRole.UserRole + 3

THUMBNAIL_SIZE = 64  # longest side of a row's thumbnail, pixels


@dataclass
class ResultRow:
    """One inspected image. ``score`` is normalised (threshold 0.5); None means the image was unreadable."""

    path: Path
    score: float | None
    raw_score: float | None
    label: str = ""
    error: str = ""
    thumbnail: QImage | None = None
    latency_ms: float = 0.0
    source: str = "folder"
    record_id: int | None = None  # the inspection's row in the project's records, once recorded
    refused: bool = False  # read but not inspected (shaped unlike the training images): shown as a picture


class ResultsModel(QAbstractTableModel):
    """Image results as a table: Thumbnail, Name, Score, Verdict, Label.

    Verdicts are derived from the scores by the current ``Verdicts``; ``set_verdicts`` re-judges every row
    and emits a single ``dataChanged`` over the Verdict column (no reset, so the selection is kept).
    """

    THUMBNAIL, NAME, SCORE, VERDICT, LABEL, FOLDER = range(6)
    # Folder: the image's folder (the defect class of an MVTec test/ tree), which tells same-named files apart.
    HEADERS = ("", "Name", "Score", "Verdict", "Label", "Folder")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[ResultRow] = []
        self._verdict_of: list[str] = []
        self._pixmaps: dict[int, QPixmap] = {}
        self._index_of: dict[Path, int] = {}
        self._verdicts = Verdicts()
        self._counts = dict.fromkeys(VERDICTS, 0)
        self._bold = QFont()
        self._bold.setBold(True)
        self._brushes = {
            v: (QBrush(QColor(colour.fill)), QBrush(QColor(colour.on_fill))) for v, colour in VERDICT_COLOURS.items()
        }

    # -- Qt model interface ----------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        r, col = index.row(), index.column()
        row = self._rows[r]
        verdict = self._verdict_of[r]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == self.NAME:
                return row.path.name
            if col == self.SCORE:
                return "—" if row.score is None else f"{row.score:.3f}"
            if col == self.VERDICT:
                return verdict
            if col == self.LABEL:
                return row.label
            if col == self.FOLDER:
                return folder_of(row.path)
            return None
        if role == SORT_ROLE:
            if col == self.SCORE:
                return -1.0 if row.score is None else float(row.score)
            if col == self.VERDICT:
                return SEVERITY[verdict]
            if col == self.NAME:
                return row.path.name.lower()
            if col == self.LABEL:
                return row.label
            if col == self.FOLDER:
                return folder_of(row.path).lower()
            return r
        if role == Qt.ItemDataRole.DecorationRole and col == self.THUMBNAIL:
            return self._pixmap(r)
        if col == self.VERDICT and role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole):
            bg, fg = self._brushes[verdict]
            return bg if role == Qt.ItemDataRole.BackgroundRole else fg
        if role == Qt.ItemDataRole.FontRole and col == self.VERDICT:
            return self._bold
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if col == self.SCORE:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if col in (self.VERDICT, self.LABEL, self.THUMBNAIL):
                return int(Qt.AlignmentFlag.AlignCenter)
            return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, verdict)
        if role == ROW_ROLE:
            return row
        if role == VERDICT_ROLE:
            return verdict
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    # -- API -------------------------------------------------------------------------------------

    def add_result(self, row: ResultRow) -> int:
        """Append one result; returns its row index."""
        return self.add_results([row])

    def add_results(self, rows: Iterable[ResultRow]) -> int:
        """Append a batch with one insert notification; returns the index of the first new row."""
        rows = list(rows)
        first = len(self._rows)
        if not rows:
            return first
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        verdicts = self._verdicts.verdicts([row.score for row in rows])
        for offset, (row, verdict) in enumerate(zip(rows, verdicts)):
            self._rows.append(row)
            self._verdict_of.append(verdict)
            self._counts[verdict] += 1
            self._index_of.setdefault(Path(row.path), first + offset)
        self.endInsertRows()
        return first

    def row_at(self, index: int | QModelIndex | QPersistentModelIndex) -> ResultRow:
        """The result at a row number or a (source-model) index."""
        return self._rows[index if isinstance(index, int) else index.row()]

    def verdict_at(self, index: int | QModelIndex | QPersistentModelIndex) -> str:
        return self._verdict_of[index if isinstance(index, int) else index.row()]

    def rows(self) -> list[ResultRow]:
        """All results in insertion order (a copy of the list; the rows themselves are shared)."""
        return list(self._rows)

    def set_label(self, row_index: int, label: str) -> None:
        """Show a technician's label ("OK", "NG" or "") on a row."""
        if label not in ("", "OK", "NG"):
            raise ValueError(f"label must be 'OK', 'NG' or '', not {label!r}")
        row = self._rows[row_index]
        if row.label == label:
            return
        row.label = label
        index = self.index(row_index, self.LABEL)
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole, SORT_ROLE])

    def verdicts(self) -> Verdicts:
        return self._verdicts

    def update_scores(self, scores: dict[int, tuple[float, float]]) -> int:
        """New (score, raw_score) for some rows after the model changed; returns how many verdicts changed."""
        if not scores:
            return 0
        changed = 0
        for row_index, (score, raw_score) in scores.items():
            row = self._rows[row_index]
            row.score, row.raw_score = score, raw_score
            verdict = self._verdicts.verdict(score)
            if verdict != self._verdict_of[row_index]:
                self._counts[self._verdict_of[row_index]] -= 1
                self._counts[verdict] += 1
                self._verdict_of[row_index] = verdict
                changed += 1
        first, last = min(scores), max(scores)
        self.dataChanged.emit(self.index(first, self.SCORE), self.index(last, self.VERDICT))
        return changed

    def set_verdicts(self, verdicts: Verdicts) -> None:
        """Re-judge every row; one ``dataChanged`` over the Verdict column when anything changed."""
        if verdicts == self._verdicts:
            return
        self._verdicts = verdicts
        if not self._rows:
            return
        new = verdicts.verdicts([row.score for row in self._rows])
        if new == self._verdict_of:
            return
        self._verdict_of = new
        self._counts = dict.fromkeys(VERDICTS, 0)
        for verdict in new:
            self._counts[verdict] += 1
        self.dataChanged.emit(
            self.index(0, self.VERDICT),
            self.index(len(self._rows) - 1, self.VERDICT),
            [
                Qt.ItemDataRole.DisplayRole,
                Qt.ItemDataRole.BackgroundRole,
                Qt.ItemDataRole.ForegroundRole,
                Qt.ItemDataRole.ToolTipRole,
                SORT_ROLE,
                VERDICT_ROLE,
            ],
        )

    def clear(self) -> None:
        self.beginResetModel()
        self._rows.clear()
        self._verdict_of.clear()
        self._pixmaps.clear()
        self._index_of.clear()
        self._counts = dict.fromkeys(VERDICTS, 0)
        self.endResetModel()

    def counts(self) -> dict[str, int]:
        """Rows per verdict: {"OK": n, "NG": n, "Review": n, "Error": n}."""
        return {key: self._counts[key] for key in ("OK", "NG", "Review", "Error")}

    def scores(self) -> np.ndarray:
        """The scores of the readable images (float64, insertion order)."""
        return np.array([row.score for row in self._rows if row.score is not None], dtype=np.float64)

    def find(self, path: str | Path) -> int | None:
        """Row index of the first result for ``path``, or None."""
        return self._index_of.get(Path(path))

    # -- helpers ---------------------------------------------------------------------------------

    def _pixmap(self, r: int) -> QPixmap | None:
        pixmap = self._pixmaps.get(r)
        if pixmap is None:
            image = self._rows[r].thumbnail
            if image is None or image.isNull():
                return None
            if max(image.width(), image.height()) > THUMBNAIL_SIZE:
                image = image.scaled(
                    THUMBNAIL_SIZE,
                    THUMBNAIL_SIZE,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            pixmap = QPixmap.fromImage(image)
            self._pixmaps[r] = pixmap
        return pixmap

    def _tooltip(self, row: ResultRow, verdict: str) -> str:
        lines = [str(row.path)]
        if row.error:
            lines.append(f"Error: {row.error}")
        else:
            lines.append(f"Score {row.score:.3f} → {verdict}" if row.score is not None else verdict)
            if row.raw_score is not None:
                lines.append(f"Raw score {row.raw_score:.4g}")
        if row.label:
            lines.append(f"Label: {row.label}")
        if row.latency_ms:
            lines.append(f"{row.latency_ms:.0f} ms ({row.source})")
        return "\n".join(lines)
