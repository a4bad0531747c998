"""Evaluation results: score histogram by class, ROC curve and a metrics table.

The widget only displays the dict returned by the evaluation service (``services.evaluation.evaluate``),
ROC curve included: the curve is the engine's, computed once by the service, never re-implemented here.
A click on a confusion-matrix row of the table or on a point of the ROC lists the images behind it; opening
them only emits ``images_requested`` with their paths (the window scores and lists them).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from anomalyapp.core.verdicts import NORMALISED_THRESHOLD, Verdict, verdict_for
from anomalyapp.gui.widgets.threshold_panel import (
    DEFECT_COLOUR,
    GOOD_COLOUR,
    THRESHOLD_COLOUR,
    style_plot,
    with_alpha,
)

__all__ = ["EvaluationPlots", "METRIC_ROWS"]

NOT_AVAILABLE = "n/a"
CLICK_HINT = "Click a TN/FP/FN/TP row or a ROC point to list its images."

#: The metrics table's key of the test images the model learnt from (the row a click lists them from).
LEARNT_KEY = "learnt_images"
#: (label, result key, kind) for the metrics table, in display order.
METRIC_ROWS = (
    ("Image AUROC", "image_auroc", "ratio"),
    ("Pixel AUROC", "pixel_auroc", "ratio"),
    ("AUPRO @ 0.3 FPR", "aupro", "ratio"),
    ("F1-max", "f1_max", "ratio"),
    # Test images the model learnt from: they qualify every figure above; and the image AUROC of the others.
    ("Seen by the model", LEARNT_KEY, "learnt"),
    ("Image AUROC without them", ("unseen", "image_auroc"), "ratio"),
    ("Threshold used", "threshold", "ratio"),
    ("False-reject rate (good judged NG)", "false_reject_rate", "ratio"),
    ("Expected false-reject rate", "expected_false_reject_rate", "expected_rate"),
    ("Good judged NG (expected, 90 %)", "false_rejects_against_expected", "against_expected"),
    ("Recall at 1 % false rejects", ("recall_at_false_reject_rate", "0.01"), "ratio"),
    ("Recall at 5 % false rejects", ("recall_at_false_reject_rate", "0.05"), "ratio"),
    ("Recall at the reached rate", "recall_at_reached_false_reject_rate", "ratio"),
    ("Precision", "precision", "ratio"),
    ("Recall", "recall", "ratio"),
    ("Accuracy", "accuracy", "ratio"),
    ("F1", "f1", "ratio"),
    ("TN (good passed)", ("confusion_matrix", 0, 0), "count"),
    ("FP (good rejected)", ("confusion_matrix", 0, 1), "count"),
    ("FN (defect passed)", ("confusion_matrix", 1, 0), "count"),
    ("TP (defect rejected)", ("confusion_matrix", 1, 1), "count"),
)


def _lookup(result: dict, key):
    if isinstance(key, tuple):
        value = result.get(key[0])
        try:
            for i in key[1:]:
                value = value[i]
        except (TypeError, IndexError, KeyError):
            return None
        return value
    return result.get(key)


def _is_defective(item: dict) -> bool:
    return item.get("defect_type", "good") != "good"


def _format(value, kind: str) -> str:
    if value is None:
        return NOT_AVAILABLE
    if kind == "learnt":  # services.evaluation: test images taught good, or among the training images
        return f"{len(value)}: figures flattered" if value else "0"
    if kind == "expected_rate":  # the calibration's [estimate, low, high] at the threshold used
        try:
            estimate, low, high = (float(part) for part in value)
        except (TypeError, ValueError):
            return NOT_AVAILABLE
        return f"{estimate:.3f} ({low:.3f}-{high:.3f})"
    if kind == "against_expected":  # services.evaluation.false_rejects_against_expected
        return (f"{value['judged_ng']}/{value['good_images']} ({value['expected_low']}-{value['expected_high']})"
                + ("" if value["within"] else " outside"))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NOT_AVAILABLE
    if not np.isfinite(number):
        return NOT_AVAILABLE
    return f"{int(number)}" if kind == "count" else f"{number:.3f}"


def _explain(value, kind: str) -> str:
    """A value's tooltip, where the cell's text is short for what it says."""
    if kind == "learnt" and value:
        return (f"The model learnt from {len(value)} of these test images (taught good in a review, or in its "
                "training folder): it has seen them, so every figure above is better than on new parts. Image AUROC "
                "without them is the next row; click this row to list them.")
    if kind == "expected_rate" and value:
        return ("The share of new good parts the model's calibration expects this threshold to judge NG, with its "
                "90 % interval (from the good images scored unseen in training, not from these test images).")
    return ""


class EvaluationPlots(QWidget):
    """Score histogram by class, ROC curve and metrics table for one evaluation result.

    Object names: ``evaluation_histogram``, ``roc_plot``, ``metrics_table``, ``evaluation_images`` (the images
    behind the clicked cell or point), ``open_evaluation_images``.
    """

    BINS = 40
    #: The image paths (str) the user asked to open in the window's viewer.
    images_requested = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        text = self.palette().color(QPalette.ColorRole.Text)

        self.histogram = pg.PlotWidget()
        self.histogram.setObjectName("evaluation_histogram")
        style_plot(self.histogram)
        self.histogram.setTitle("Scores by class")
        self.histogram.setLabel("bottom", "Score (normalised)")
        self.histogram.setLabel("left", "% of class")
        legend = self.histogram.addLegend(offset=(-8, 8), labelTextColor=text)
        legend.setBrush(pg.mkBrush(with_alpha(self.palette().color(QPalette.ColorRole.Base), 200)))
        self._good_item = pg.PlotDataItem(
            stepMode="center", fillLevel=0, pen=pg.mkPen(GOOD_COLOUR, width=1.5),
            brush=pg.mkBrush(with_alpha(GOOD_COLOUR, 90)), name="Good",
        )
        self._defect_item = pg.PlotDataItem(
            stepMode="center", fillLevel=0, pen=pg.mkPen(DEFECT_COLOUR, width=1.5),
            brush=pg.mkBrush(with_alpha(DEFECT_COLOUR, 90)), name="Defective",
        )
        self.histogram.addItem(self._good_item)
        self.histogram.addItem(self._defect_item)
        self._legend = legend
        self._threshold_line = pg.InfiniteLine(
            pos=NORMALISED_THRESHOLD, angle=90, movable=False, pen=pg.mkPen(THRESHOLD_COLOUR, width=2, style=Qt.PenStyle.DashLine),
            label="threshold {value:.2f}",
            labelOpts={"position": 0.93, "color": "#ffffff", "fill": with_alpha(THRESHOLD_COLOUR, 230),
                       "anchors": [(0, 0.5), (0, 0.5)]},
        )
        self.histogram.addItem(self._threshold_line, ignoreBounds=True)

        self.roc = pg.PlotWidget()
        self.roc.setObjectName("roc_plot")
        style_plot(self.roc)
        self.roc.setLabel("bottom", "False positive rate")
        self.roc.setLabel("left", "True positive rate")
        self.roc.setXRange(0, 1, padding=0.05)
        self.roc.setYRange(0, 1, padding=0.05)
        ticks = [[(v, f"{v:.1f}") for v in np.linspace(0.0, 1.0, 6)]]
        self.roc.getAxis("bottom").setTicks(ticks)
        self.roc.getAxis("left").setTicks(ticks)
        diagonal = QColor(text)
        diagonal.setAlpha(110)
        self.roc.plot([0, 1], [0, 1], pen=pg.mkPen(diagonal, width=1, style=Qt.PenStyle.DashLine))
        self._roc_item = self.roc.plot([], [], pen=pg.mkPen(THRESHOLD_COLOUR, width=2.5),
                                       fillLevel=0, brush=pg.mkBrush(with_alpha(THRESHOLD_COLOUR, 40)))
        self._operating_point = pg.ScatterPlotItem(
            size=10, pen=pg.mkPen(text, width=1.5), brush=pg.mkBrush(DEFECT_COLOUR)
        )
        self._operating_point.setToolTip("Operating point at the threshold")
        self.roc.addItem(self._operating_point)
        self._roc_points = pg.ScatterPlotItem(size=7, pen=pg.mkPen(None), brush=pg.mkBrush(THRESHOLD_COLOUR))
        self._roc_points.setToolTip("Click a point: the images it misjudges")
        self._roc_points.sigClicked.connect(lambda _item, points, _event: points and self.show_roc_point_images(
            points[0].index()))
        self.roc.addItem(self._roc_points)

        self.metrics_table = QTableWidget(len(METRIC_ROWS), 2)
        self.metrics_table.setObjectName("metrics_table")
        self.metrics_table.setHorizontalHeaderLabels(["Metric", "Value"])
        self.metrics_table.verticalHeader().hide()
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.metrics_table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.metrics_table.setAlternatingRowColors(True)
        self.metrics_table.setShowGrid(False)
        header = self.metrics_table.horizontalHeader()
        # The names are what a reader scans: they keep their width, and a long value takes what is left.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setHighlightSections(False)
        bold = QFont(self.metrics_table.font())
        bold.setBold(True)
        for row, (label, _key, _kind) in enumerate(METRIC_ROWS):
            name = QTableWidgetItem(label)
            name.setToolTip(label)
            value = QTableWidgetItem(NOT_AVAILABLE)
            value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            value.setFont(bold)
            self.metrics_table.setItem(row, 0, name)
            self.metrics_table.setItem(row, 1, value)
        self.metrics_table.resizeRowsToContents()
        # Wide enough for the longest metric's name and a value: a name cut to "False-reject rate (good judged ..."
        # says nothing.
        longest = max(self.metrics_table.fontMetrics().horizontalAdvance(label) for label, _, _ in METRIC_ROWS)
        widest_value = self.metrics_table.fontMetrics().horizontalAdvance("100/1000 (10-30) outside")
        self.metrics_table.setMinimumWidth(max(230, longest + widest_value + 40))
        self.metrics_table.cellClicked.connect(lambda row, _column: self.show_cell_images(row))

        self.images_caption = QLabel(CLICK_HINT)
        self.images_caption.setWordWrap(True)
        self.images_list = QListWidget()
        self.images_list.setObjectName("evaluation_images")
        self.images_list.itemDoubleClicked.connect(
            lambda item: self.images_requested.emit([item.data(Qt.ItemDataRole.UserRole)]))
        self.open_images_button = QPushButton("Open in viewer")
        self.open_images_button.setObjectName("open_evaluation_images")
        self.open_images_button.setToolTip("Score and list these images in the main window")
        self.open_images_button.clicked.connect(self._open_listed_images)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.metrics_table, 3)
        side_layout.addWidget(self.images_caption)
        side_layout.addWidget(self.images_list, 2)
        side_layout.addWidget(self.open_images_button)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.histogram)
        splitter.addWidget(self.roc)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setStretchFactor(2, 0)
        splitter.setChildrenCollapsible(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._per_image: list[dict] = []
        self._threshold = NORMALISED_THRESHOLD
        self._roc_thresholds: list[float | None] = []
        self.clear()

    # -- API -------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Empty plots and n/a everywhere."""
        for row in range(len(METRIC_ROWS)):
            self.metrics_table.item(row, 1).setText(NOT_AVAILABLE)
        self._good_item.setData([], [])
        self._defect_item.setData([], [])
        self._roc_item.setData([], [])
        self._operating_point.setData([], [])
        self._roc_points.setData([], [])
        self._threshold_line.setValue(NORMALISED_THRESHOLD)
        self.roc.setTitle("ROC")
        self._per_image, self._threshold, self._roc_thresholds = [], NORMALISED_THRESHOLD, []
        self._list_images("", [])

    def show_evaluation(self, result: dict) -> None:
        """Show an evaluation result dict (see ``services.evaluation.evaluate``); None values show "n/a"."""
        self.clear()
        for row, (_label, key, kind) in enumerate(METRIC_ROWS):
            item, value = self.metrics_table.item(row, 1), _lookup(result, key)
            item.setText(_format(value, kind))
            item.setToolTip(_explain(value, kind))

        threshold = result.get("threshold")
        threshold = NORMALISED_THRESHOLD if threshold is None else float(threshold)
        self._threshold = threshold
        self._per_image = [item for item in result.get("per_image") or ()
                           if item.get("score") is not None and np.isfinite(item["score"])]
        labels, scores = [], []
        for item in result.get("per_image") or ():
            score = item.get("score")
            if score is None or not np.isfinite(score):
                continue
            labels.append(_is_defective(item))
            scores.append(float(score))
        labels_arr = np.asarray(labels, dtype=bool)
        scores_arr = np.asarray(scores, dtype=np.float64)
        self._show_histogram(labels_arr, scores_arr, threshold)
        self._show_roc(result.get("roc"), result.get("confusion_matrix"), result.get("image_auroc"))
        self.images_caption.setText(self._click_hint())

    def render_png(self) -> bytes:
        """The plots and the table as they are shown, as PNG bytes (the caller saves them)."""
        from PySide6.QtCore import QBuffer, QByteArray, QIODevice

        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not self.grab().save(buffer, "PNG"):
            raise RuntimeError("the evaluation plots could not be rendered as PNG")
        buffer.close()
        return bytes(data.data())

    def listed_paths(self) -> list[str]:
        """The paths of the images listed now, in list order."""
        return [self.images_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.images_list.count())]

    def show_cell_images(self, row: int) -> None:
        """List the images of a confusion-matrix row of the table (TN, FP, FN, TP), or those the model learnt from
        (Seen by the model); other rows do nothing."""
        key = METRIC_ROWS[row][1] if 0 <= row < len(METRIC_ROWS) else None
        if key == LEARNT_KEY:
            chosen = [item for item in self._per_image if item.get("learnt")]
            self._list_images(f"{len(chosen)} test image{'' if len(chosen) == 1 else 's'} the model learnt from", chosen)
            return
        if not (isinstance(key, tuple) and key[0] == "confusion_matrix"):
            return
        defective, judged_ng = bool(key[1]), bool(key[2])
        chosen = [item for item in self._per_image
                  if _is_defective(item) == defective and self._judged_ng(item, self._threshold) == judged_ng]
        self._list_images(f"{METRIC_ROWS[row][0]} at threshold {self._threshold:.3f}: {len(chosen)} images", chosen)

    def show_roc_point_images(self, index: int) -> None:
        """List the images a ROC point misjudges: good ones judged NG (false positives), then defects passed."""
        if not 0 <= index < len(self._roc_thresholds):
            return
        threshold = self._roc_thresholds[index]
        threshold = np.inf if threshold is None else float(threshold)
        false_positives = [i for i in self._per_image if not _is_defective(i) and self._judged_ng(i, threshold)]
        misses = [i for i in self._per_image if _is_defective(i) and not self._judged_ng(i, threshold)]
        self._list_images(f"ROC point at threshold {threshold:.3f}: {len(false_positives)} good judged NG, "
                          f"{len(misses)} defects passed", false_positives + misses)

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _judged_ng(item: dict, threshold: float) -> bool:
        return verdict_for(item["score"], threshold) == Verdict.NG

    def _list_images(self, caption: str, items: list[dict]) -> None:
        self.images_list.clear()
        for item in items:
            path = str(item["path"])
            entry = QListWidgetItem(f"{path}  ·  {item.get('defect_type', 'good')}  ·  {float(item['score']):.3f}")
            entry.setData(Qt.ItemDataRole.UserRole, path)
            entry.setToolTip(path)
            self.images_list.addItem(entry)
        if caption:
            self.images_caption.setText(caption + " (double-click one to open it)")
        else:
            self.images_caption.setText(self._click_hint())
        self.open_images_button.setEnabled(bool(items))

    def _click_hint(self) -> str:
        """What a click lists: the Seen by the model row too, when there are such images."""
        if any(item.get("learnt") for item in self._per_image):
            return "Click a TN/FP/FN/TP or Seen by the model row, or a ROC point, to list its images."
        return CLICK_HINT

    def _open_listed_images(self) -> None:
        paths = self.listed_paths()
        if paths:
            self.images_requested.emit(paths)

    def _show_histogram(self, labels: np.ndarray, scores: np.ndarray, threshold: float) -> None:
        xmax = max(1.5, 1.1 * float(scores.max()) if scores.size else 0.0, 1.1 * threshold)
        edges = np.linspace(0.0, xmax, self.BINS + 1)
        self._legend.clear()
        peak = 0.0
        for item, values, name in (
            (self._good_item, scores[~labels], "Good"),
            (self._defect_item, scores[labels], "Defective"),
        ):
            if values.size:
                counts, _ = np.histogram(values, bins=edges)
                percent = counts * (100.0 / values.size)
                peak = max(peak, float(percent.max()))
                item.setData(edges, percent)
                self._legend.addItem(item, f"{name} ({values.size})")
        self._threshold_line.setValue(threshold)
        self.histogram.setXRange(0.0, xmax, padding=0.03)
        self.histogram.setYRange(0.0, peak * 1.15 if peak else 100.0, padding=0)

    def _show_roc(self, roc: dict | None, confusion, auroc) -> None:
        self.roc.setTitle(f"ROC (AUROC {_format(auroc, 'ratio')})")
        if not roc:
            return
        fpr, tpr = np.asarray(roc["fpr"], dtype=np.float64), np.asarray(roc["tpr"], dtype=np.float64)
        self._roc_item.setData(fpr, tpr)
        thresholds = roc.get("thresholds")
        if thresholds is not None and len(thresholds) == len(fpr):  # older results carry no thresholds
            self._roc_thresholds = list(thresholds)
            self._roc_points.setData(fpr, tpr)
        # The operating point: the rates at the model's threshold, from the result's confusion matrix
        # [[tn, fp], [fn, tp]] (the curve's point for the same threshold).
        try:
            (tn, fp), (fn, tp) = confusion
            self._operating_point.setData([fp / (tn + fp)], [tp / (fn + tp)])
        except (TypeError, ValueError, ZeroDivisionError):
            pass
