"""The results list: one row per inspected image, re-judged instantly when the threshold moves.

``ResultsModel`` keeps every image result with its normalised score (the calibrated threshold is 0.5).
Verdicts are not stored with the results: they are recomputed from the scores by a ``Verdicts`` rule, so
moving the threshold re-judges thousands of rows in a few milliseconds without running the model.
``ResultsFilter`` filters by verdict and name and sorts numerically; ``ResultsPanel`` is the thin view
(no file I/O, no model calls) that emits ``current_changed`` with the selected ``ResultRow``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from anomalyapp.core.colours import VERDICT_COLOURS
from anomalyapp.core.verdicts import SEVERITY, Verdict, Verdicts

__all__ = [
    "VERDICTS",
    "VERDICT_COLOURS",
    "ResultRow",
    "Verdicts",
    "ResultsModel",
    "ResultsFilter",
    "ResultsPanel",
    "VerdictDelegate",
    "SORT_ROLE",
    "ROW_ROLE",
    "VERDICT_ROLE",
]

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


class ResultsModel(QAbstractTableModel):
    """Image results as a table: Thumbnail, Name, Score, Verdict, Label.

    Verdicts are derived from the scores by the current ``Verdicts``; ``set_verdicts`` re-judges every row
    and emits a single ``dataChanged`` over the Verdict column (no reset, so the selection is kept).
    """

    THUMBNAIL, NAME, SCORE, VERDICT, LABEL = range(5)
    HEADERS = ("", "Name", "Score", "Verdict", "Label")

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


class ResultsFilter(QSortFilterProxyModel):
    """Filters ResultsModel rows by verdict and by a case-insensitive name substring; sorts numerically.

    ``dynamicSortFilter`` is on, so a re-verdict (``dataChanged``) re-filters and re-sorts at once.
    """

    # "Review queue": what a technician still has to decide, NG or Review and not yet labelled.
    VERDICT_FILTERS = ("All", "Review queue", "OK", "NG", "Review", "Error", "Unlabelled")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._verdict = "All"
        self._name = ""
        self.setDynamicSortFilter(True)
        self.setSortRole(SORT_ROLE)

    def verdict_filter(self) -> str:
        return self._verdict

    def name_filter(self) -> str:
        return self._name

    def set_verdict_filter(self, verdict: str) -> None:
        if verdict not in self.VERDICT_FILTERS:
            raise ValueError(f"unknown verdict filter {verdict!r}; expected one of {self.VERDICT_FILTERS}")
        if verdict != self._verdict:
            self._change_filter(lambda: setattr(self, "_verdict", verdict))

    def set_name_filter(self, text: str) -> None:
        text = text.strip().casefold()
        if text != self._name:
            self._change_filter(lambda: setattr(self, "_name", text))

    def _change_filter(self, apply) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9: invalidateFilter() is deprecated
            self.beginFilterChange()
            apply()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - older Qt
            apply()
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:
        model = self.sourceModel()
        if model is None:
            return False
        if self._verdict != "All":
            if self._verdict == "Unlabelled":
                if model.row_at(source_row).label:
                    return False
            elif self._verdict == "Review queue":
                if model.row_at(source_row).label or model.verdict_at(source_row) not in ("NG", "Review"):
                    return False
            elif model.verdict_at(source_row) != self._verdict:
                return False
        if self._name and self._name not in model.row_at(source_row).path.name.casefold():
            return False
        return True


class VerdictDelegate(QStyledItemDelegate):
    """Paints the verdict as a coloured pill that stays readable on selected rows and in any palette."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        verdict = index.data(VERDICT_ROLE)
        if verdict not in VERDICT_COLOURS:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        opt.backgroundBrush = QBrush()
        style = opt.widget.style() if opt.widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        bg, fg = VERDICT_COLOURS[verdict].fill, VERDICT_COLOURS[verdict].on_fill
        font = QFont(option.font)
        font.setBold(True)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width = min(option.rect.width() - 8, metrics.horizontalAdvance(verdict) + 18)
        height = min(option.rect.height() - 4, metrics.height() + 8)
        pill = option.rect.adjusted(0, 0, 0, 0)
        pill.setSize(pill.size().boundedTo(QSize(width, height)))
        pill.moveCenter(option.rect.center())
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(bg))
        painter.drawRoundedRect(pill, height / 2, height / 2)
        painter.setPen(QColor(fg))
        painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, verdict)
        painter.restore()


class ResultsPanel(QWidget):
    """The results table with its filter row and summary. Thin: shows a ResultsModel, emits intents.

    Signals:
        current_changed(object): the selected ResultRow, or None when nothing is selected.
    """

    current_changed = Signal(object)

    def __init__(self, model: ResultsModel | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._model = model if model is not None else ResultsModel(self)
        self._proxy = ResultsFilter(self)
        self._proxy.setSourceModel(self._model)

        self.verdict_filter = QComboBox()
        self.verdict_filter.setObjectName("verdict_filter")
        self.verdict_filter.addItems(ResultsFilter.VERDICT_FILTERS)
        self.verdict_filter.setToolTip("Show only results with this verdict")
        self.verdict_filter.currentTextChanged.connect(self._proxy.set_verdict_filter)

        self.name_filter = QLineEdit()
        self.name_filter.setObjectName("name_filter")
        self.name_filter.setPlaceholderText("Filter by name")
        self.name_filter.setClearButtonEnabled(True)
        self.name_filter.textChanged.connect(self._proxy.set_name_filter)

        self.summary_label = QLabel()
        self.summary_label.setObjectName("summary_label")
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.view = QTableView()
        self.view.setObjectName("results_view")
        self.view.setModel(self._proxy)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setAlternatingRowColors(True)
        self.view.setShowGrid(False)
        self.view.setWordWrap(False)
        self._verdict_delegate = VerdictDelegate(self.view)
        self.view.setItemDelegateForColumn(ResultsModel.VERDICT, self._verdict_delegate)
        self.view.setIconSize(self.view.iconSize().expandedTo(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE)))
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIZE + 6)
        header = self.view.horizontalHeader()
        header.setHighlightSections(False)
        header.setSortIndicatorClearable(True)
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # insertion order until the user sorts
        header.setSectionResizeMode(ResultsModel.THUMBNAIL, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(ResultsModel.THUMBNAIL, THUMBNAIL_SIZE + 8)
        header.setSectionResizeMode(ResultsModel.NAME, QHeaderView.ResizeMode.Stretch)
        for column, width in ((ResultsModel.SCORE, 70), (ResultsModel.VERDICT, 78), (ResultsModel.LABEL, 56)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, width)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setSortingEnabled(True)
        self.view.selectionModel().currentRowChanged.connect(self._on_current_row_changed)

        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        filters.addWidget(QLabel("Show"))
        filters.addWidget(self.verdict_filter)
        filters.addWidget(self.name_filter, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(filters)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.summary_label)

        for sig in (
            self._model.rowsInserted,
            self._model.rowsRemoved,
            self._model.modelReset,
            self._model.dataChanged,
            self._proxy.rowsInserted,
            self._proxy.rowsRemoved,
            self._proxy.modelReset,
            self._proxy.layoutChanged,
        ):
            sig.connect(self._update_summary)
        self._model.modelReset.connect(lambda: self.current_changed.emit(None))
        self._update_summary()

    # -- API -------------------------------------------------------------------------------------

    def model(self) -> ResultsModel:
        return self._model

    def proxy(self) -> ResultsFilter:
        return self._proxy

    def current_row(self) -> ResultRow | None:
        index = self.view.currentIndex()
        return self._proxy.data(index, ROW_ROLE) if index.isValid() else None

    def current_source_row(self) -> int | None:
        """Row number of the current result in the model, or None."""
        index = self.view.currentIndex()
        return self._proxy.mapToSource(index).row() if index.isValid() else None

    def select_source_row(self, row_index: int) -> bool:
        """Select a model row if the filter shows it; returns whether it is now selected."""
        index = self._proxy.mapFromSource(self._model.index(row_index, ResultsModel.NAME))
        if not index.isValid():
            return False
        self._select(index)
        return True

    def select_next(self) -> None:
        self._step(+1)

    def select_previous(self) -> None:
        self._step(-1)

    # -- internals -------------------------------------------------------------------------------

    def _step(self, delta: int) -> None:
        count = self._proxy.rowCount()
        if count == 0:
            return
        current = self.view.currentIndex()
        if not current.isValid():
            row = 0 if delta > 0 else count - 1
        else:
            row = min(max(current.row() + delta, 0), count - 1)
            if row == current.row():
                return
        self._select(self._proxy.index(row, ResultsModel.NAME))

    def _select(self, index: QModelIndex) -> None:
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.view.selectionModel().setCurrentIndex(index, flags)
        self.view.scrollTo(index)

    def _on_current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.current_changed.emit(self._proxy.data(current, ROW_ROLE) if current.isValid() else None)

    def _update_summary(self, *_args) -> None:
        total = self._model.rowCount()
        if total == 0:
            self.summary_label.setText("No images yet")
            return
        counts = self._model.counts()
        text = f"{total} image{'s' if total != 1 else ''}: {counts['OK']} OK, {counts['NG']} NG"
        if counts["Review"] or self._model.verdicts().uncertain_low is not None:
            text += f", {counts['Review']} review"
        if counts["Error"]:
            text += f", {counts['Error']} error{'s' if counts['Error'] != 1 else ''}"
        shown = self._proxy.rowCount()
        if shown != total:
            text += f"  ·  {shown} shown"
        self.summary_label.setText(text)

