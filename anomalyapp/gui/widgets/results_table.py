"""The results list: one row per inspected image, re-judged instantly when the threshold moves.

The model is ``results_model.ResultsModel`` (re-exported here with its roles and ``ResultRow``).
``ResultsFilter`` filters by verdict and name and sorts numerically; ``ResultsPanel`` is the thin view
(no file I/O, no model calls) that emits ``current_changed`` with the selected ``ResultRow``.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QPainter
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
from anomalyapp.core.image_names import folder_of
from anomalyapp.core.verdicts import Verdicts
from anomalyapp.gui.widgets.results_model import (
    ROW_ROLE,
    SORT_ROLE,
    THUMBNAIL_SIZE,
    VERDICT_ROLE,
    VERDICTS,
    ResultRow,
    ResultsModel,
)

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


class ResultsFilter(QSortFilterProxyModel):
    """Filters ResultsModel rows by verdict and by a case-insensitive substring of the name or the folder; sorts
    numerically.

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
        if self._name:
            # The folder too: an MVTec test tree's folder is the defect class ("good", "crack"), a line's the day.
            path = model.row_at(source_row).path
            if self._name not in path.name.casefold() and self._name not in folder_of(path).casefold():
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
        self.name_filter.setPlaceholderText("Filter by name or folder")
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
        # File names of a line share their start and differ at the end (a counter or a time: "exp1_num_108719.jpg"):
        # a name cut at its start still tells the images apart, where "exp1_num_…" in every row did not.
        self.view.setTextElideMode(Qt.TextElideMode.ElideLeft)
        self._verdict_delegate = VerdictDelegate(self.view)
        self.view.setItemDelegateForColumn(ResultsModel.VERDICT, self._verdict_delegate)
        self.view.setIconSize(self.view.iconSize().expandedTo(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE)))
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIZE + 6)
        header = self.view.horizontalHeader()
        header.setHighlightSections(False)
        # Insertion order until the user sorts; after that a header click only toggles ascending/descending
        # (a clearable indicator made every third click an unsorted list, which reads as a broken sort).
        header.setSortIndicatorClearable(False)
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        header.setSectionResizeMode(ResultsModel.THUMBNAIL, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(ResultsModel.THUMBNAIL, THUMBNAIL_SIZE + 8)
        header.setSectionResizeMode(ResultsModel.NAME, QHeaderView.ResizeMode.Stretch)
        # Narrow fixed columns leave the name its room in a 360 px dock (1280x800). The folder is cut at its start
        # like the name, which still tells "broken_large" from "broken_small"; the tooltip has the whole path.
        for column, width in ((ResultsModel.SCORE, 56), (ResultsModel.VERDICT, 70), (ResultsModel.LABEL, 50),
                              (ResultsModel.FOLDER, 72)):
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

    def source_row_after_current(self) -> int | None:
        """Model row of the result listed just after the current one, or None. Taken before a decision: once
        the decided row leaves a filtered list, the view's current index has already moved on to this row."""
        index = self.view.currentIndex()
        if not index.isValid() or index.row() + 1 >= self._proxy.rowCount():
            return None
        return self._proxy.mapToSource(self._proxy.index(index.row() + 1, ResultsModel.NAME)).row()

    def select_none(self) -> None:
        """No result selected (``current_changed(None)``): the viewer is about to show something that is not one."""
        self.view.selectionModel().clear()

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

