"""The threshold panel: score histograms with a draggable threshold and an optional uncertain band.

Scores are normalised so that the model's calibrated threshold is 0.5. The user moves the threshold with
the line, the slider or the spin box (all kept in sync) and may enable an uncertain band [low, threshold)
whose scores are judged "Review". The panel never judges anything itself: it emits ``verdicts_changed``
with a ``Verdicts`` rule and the window hands that to the ``ResultsModel``, which re-judges every listed
result without running the model.

Emission contract of ``verdicts_changed`` (one rule for every source of change):

* it carries the new ``Verdicts`` and is emitted only when the rule actually differs from the last one
  emitted (the panel starts at the calibrated rule, ``Verdicts()``, and does not emit for it);
* while the user drags the line or the slider, or steps a spin box, emissions are throttled with
  superqt ``qthrottled`` (leading edge, at most one per ``THROTTLE_MS``, trailing edge kept);
* when an interaction ends (line released, slider released, spin edit finished), and for discrete
  actions (band toggle, reset), the pending value is emitted at once, so the final value is never lost;
* programmatic ``set_threshold`` / ``set_uncertain`` update the view and emit once, synchronously, if the
  rule changed. ``set_reference_scores`` / ``set_result_scores`` / ``set_editable`` never emit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qthrottled

from anomalyapp.core import colours
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD, RULE_DECIMALS, Verdict, Verdicts

__all__ = [
    "ThresholdPanel",
    "style_plot",
    "with_alpha",
    "CALIBRATED_THRESHOLD",
    "GOOD_COLOUR",
    "DEFECT_COLOUR",
    "THRESHOLD_COLOUR",
    "REVIEW_COLOUR",
]

CALIBRATED_THRESHOLD = NORMALISED_THRESHOLD
# Where a Review band turned on starts when neither the project nor its model gave one (a model's calibration
# gives its own, calibration.uncertain_low).
DEFAULT_BAND_LOW = 0.4
# Good and defective scores in the verdicts' colours (core.colours), so a class reads the same everywhere.
GOOD_COLOUR = QColor(colours.VERDICT_COLOURS[Verdict.OK].fill)
DEFECT_COLOUR = QColor(colours.VERDICT_COLOURS[Verdict.NG].fill)
THRESHOLD_COLOUR = QColor(colours.THRESHOLD_COLOUR)
REVIEW_COLOUR = QColor(colours.VERDICT_COLOURS[Verdict.REVIEW].fill)


def style_plot(plot: pg.PlotWidget) -> None:
    """Colour a PlotWidget from the widget palette (light or dark theme) and fix its interaction."""
    palette = plot.palette()
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    axis_colour = QColor(text)
    axis_colour.setAlpha(150)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(axis_colour))
        axis.setTextPen(pg.mkPen(text))
    plot.getPlotItem().titleLabel.setAttr("color", text)
    plot.showGrid(x=True, y=True, alpha=0.12)
    plot.setMouseEnabled(x=False, y=False)
    plot.setMenuEnabled(False)
    plot.hideButtons()


def with_alpha(colour: QColor, alpha: int) -> QColor:
    out = QColor(colour)
    out.setAlpha(alpha)
    return out


def _finite(values) -> np.ndarray:
    arr = np.asarray([] if values is None else values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


class ThresholdPanel(QWidget):
    """Histogram of scores with a draggable threshold; emits ``verdicts_changed(Verdicts)``.

    Object names: ``threshold_plot``, ``threshold_slider``, ``threshold_spin``, ``uncertain_toggle``,
    ``uncertain_spin``, ``reset_threshold_button``, ``threshold_stats_label``, ``show_suspects_button``,
    ``set_aside_button``.
    """

    verdicts_changed = Signal(object)
    show_suspect_requested = Signal(object)  # the file of one good image the model's note names, one per click
    set_aside_requested = Signal(object)  # the same files, to move out of the good images

    SLIDER_STEPS = 1000
    THROTTLE_MS = 30
    BINS = 60
    MIN_RANGE = 1.5

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._threshold = CALIBRATED_THRESHOLD
        self._low: float | None = None
        self._last_low = DEFAULT_BAND_LOW  # where the band starts when turned on: the last one this project had
        self._calibrated_low: float | None = None  # the loaded model's calibrated band (Reset goes back to it)
        self._xmax = self.MIN_RANGE
        self._good = np.empty(0)
        self._defects = np.empty(0)
        self._results = np.empty(0)
        self._editable = True
        self._updating = False
        # threshold (normalised) -> "expected false rejects ..." text, from the model's calibration; or None
        self._expected_rate_text = None
        self._suspects_note = None  # the model's good images that score like defects, or None
        self._suspect_images: list = []  # their files
        self._next_suspect = 0  # the one the Show button shows next
        self._last_emitted = Verdicts()
        self._throttled_emit = qthrottled(self._emit_if_changed, timeout=self.THROTTLE_MS, leading=True, parent=self)

        self._build_plot()
        self._build_controls()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addLayout(self._controls)
        self._set_range()
        self._redraw_histograms()
        self._push()

    # -- construction ----------------------------------------------------------------------------

    def _build_plot(self) -> None:
        self.plot = pg.PlotWidget()
        self.plot.setObjectName("threshold_plot")
        self.plot.setMinimumHeight(120)  # room for the image on a 1280x800 screen; the dock can grow it
        style_plot(self.plot)
        self.plot.setLabel("bottom", f"Score (normalised, calibrated threshold = {CALIBRATED_THRESHOLD:g})")
        self.plot.setLabel("left", "% of images")
        self._legend = self.plot.addLegend(offset=(-8, 8), labelTextColor=self.palette().color(QPalette.ColorRole.Text))
        self._legend.setBrush(pg.mkBrush(with_alpha(self.palette().color(QPalette.ColorRole.Base), 200)))

        self._good_item = pg.PlotDataItem(
            stepMode="center", fillLevel=0, pen=pg.mkPen(GOOD_COLOUR, width=1.5),
            brush=pg.mkBrush(with_alpha(GOOD_COLOUR, 90)),
        )
        self._defect_item = pg.PlotDataItem(
            stepMode="center", fillLevel=0, pen=pg.mkPen(DEFECT_COLOUR, width=1.5),
            brush=pg.mkBrush(with_alpha(DEFECT_COLOUR, 90)),
        )
        neutral = with_alpha(self.palette().color(QPalette.ColorRole.Text), 200)
        self._result_item = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(neutral, width=1.5))
        for item in (self._good_item, self._defect_item, self._result_item):
            self.plot.addItem(item)

        self._band = pg.LinearRegionItem(
            values=(DEFAULT_BAND_LOW, CALIBRATED_THRESHOLD), movable=False, brush=pg.mkBrush(with_alpha(REVIEW_COLOUR, 45)),
            pen=pg.mkPen(None),
        )
        self._band.setZValue(-5)
        for line in self._band.lines:
            line.setPen(pg.mkPen(None))
        self.plot.addItem(self._band, ignoreBounds=True)

        self._line = pg.InfiniteLine(
            pos=self._threshold, angle=90, movable=True,
            pen=pg.mkPen(THRESHOLD_COLOUR, width=2.5),
            hoverPen=pg.mkPen(THRESHOLD_COLOUR.lighter(130), width=4),
            label="threshold {value:.2f}",
            labelOpts={"position": 0.93, "color": "#ffffff", "fill": with_alpha(THRESHOLD_COLOUR, 230),
                       "anchors": [(0, 0.5), (0, 0.5)]},
        )
        self._line.setZValue(10)
        self._low_line = pg.InfiniteLine(
            pos=DEFAULT_BAND_LOW, angle=90, movable=True,
            pen=pg.mkPen(REVIEW_COLOUR, width=2, style=Qt.PenStyle.DashLine),
            hoverPen=pg.mkPen(REVIEW_COLOUR.lighter(120), width=4),
            label="review {value:.2f}",
            labelOpts={"position": 0.8, "color": "#1a1a1a", "fill": with_alpha(REVIEW_COLOUR, 230),
                       "anchors": [(1, 0.5), (1, 0.5)]},
        )
        self._low_line.setZValue(9)
        for line in (self._line, self._low_line):
            line.setCursor(Qt.CursorShape.SizeHorCursor)
            self.plot.addItem(line, ignoreBounds=True)
        self._line.sigPositionChanged.connect(self._on_line_moved)
        self._line.sigPositionChangeFinished.connect(self._on_drag_finished)
        self._low_line.sigPositionChanged.connect(self._on_low_line_moved)
        self._low_line.sigPositionChangeFinished.connect(self._on_drag_finished)

        self._empty_text = pg.TextItem(
            "No scores yet: train or load a model", color=self.palette().color(QPalette.ColorRole.PlaceholderText),
            anchor=(0.5, 0.5), fill=self.palette().color(QPalette.ColorRole.Base),
        )
        self._empty_text.setZValue(20)  # above the threshold line
        self.plot.addItem(self._empty_text, ignoreBounds=True)

    def _build_controls(self) -> None:
        tip = "Normalised score: the model's calibrated threshold is 0.50. Scores at or above it are NG."
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setObjectName("threshold_slider")
        self.threshold_slider.setRange(0, self.SLIDER_STEPS)
        self.threshold_slider.setPageStep(self.SLIDER_STEPS // 50)
        self.threshold_slider.setToolTip(tip)
        self.threshold_slider.valueChanged.connect(self._on_slider)
        self.threshold_slider.sliderReleased.connect(self._emit_final)

        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setObjectName("threshold_spin")
        self.threshold_spin.setDecimals(RULE_DECIMALS)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setKeyboardTracking(False)
        self.threshold_spin.setToolTip(tip)
        self.threshold_spin.valueChanged.connect(self._on_spin)
        self.threshold_spin.editingFinished.connect(self._emit_final)

        self.uncertain_toggle = QCheckBox("Uncertain band")
        self.uncertain_toggle.setObjectName("uncertain_toggle")
        self.uncertain_toggle.setToolTip("Scores between the lower bound and the threshold are judged Review")
        self.uncertain_toggle.toggled.connect(self._on_toggle)

        self.uncertain_spin = QDoubleSpinBox()
        self.uncertain_spin.setObjectName("uncertain_spin")
        self.uncertain_spin.setDecimals(RULE_DECIMALS)
        self.uncertain_spin.setSingleStep(0.01)
        self.uncertain_spin.setKeyboardTracking(False)
        self.uncertain_spin.setPrefix("from ")
        self.uncertain_spin.setToolTip("Lower bound of the Review band")
        self.uncertain_spin.valueChanged.connect(self._on_low_spin)
        self.uncertain_spin.editingFinished.connect(self._emit_final)

        self.reset_threshold_button = QPushButton("Reset to calibrated")
        self.reset_threshold_button.setObjectName("reset_threshold_button")
        self.set_calibrated_band(None)  # its tooltip
        self.reset_threshold_button.clicked.connect(self.reset)

        self.stats_label = QLabel()
        self.stats_label.setObjectName("threshold_stats_label")
        self.stats_label.setWordWrap(True)
        self.stats_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.stats_label.setToolTip(
            "Good (reference): the good training images, each scored by a model that had not seen it; the threshold "
            "was set from them. Expected false rejects: the share of new good parts the calibration expects above "
            "the threshold, with its 90 % interval.")

        # The note's images shown in the viewer, one per click, so the user looks at them without hunting for the
        # files. Shown as pictures, not inspected: the model learnt most of them, and judged by it they would score
        # low and pass, beside a note that says they score like defects unseen (and be recorded as inspections).
        self.show_suspects_button = QPushButton("Show")
        self.show_suspects_button.setObjectName("show_suspects_button")
        self.show_suspects_button.setToolTip(
            "Show the good images the note names in the viewer, one per click, as they are: not inspected, since "
            "the model learnt them; the note's score is the one each gets unseen")
        self.show_suspects_button.clicked.connect(self._show_next_suspect)
        self.show_suspects_button.hide()
        self.set_aside_button = QPushButton("Set aside and train again…")
        self.set_aside_button.setObjectName("set_aside_button")
        self.set_aside_button.setToolTip("After looking: move the named images out of the good images (into "
                                         "set_aside/ beside them) and train again without them")
        self.set_aside_button.clicked.connect(lambda: self.set_aside_requested.emit(list(self._suspect_images)))
        self.set_aside_button.hide()

        grid = QGridLayout()
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setHorizontalSpacing(8)
        grid.addWidget(QLabel("Threshold"), 0, 0)
        grid.addWidget(self.threshold_slider, 0, 1)
        grid.addWidget(self.threshold_spin, 0, 2)
        band_row = QHBoxLayout()
        band_row.addWidget(self.uncertain_spin)
        band_row.addStretch(1)
        band_row.addWidget(self.reset_threshold_button)
        grid.addWidget(self.uncertain_toggle, 1, 0)
        grid.addLayout(band_row, 1, 1, 1, 2)
        grid.addWidget(self.stats_label, 2, 0, 1, 3)
        suspect_row = QHBoxLayout()  # under the note it acts on
        suspect_row.addWidget(self.show_suspects_button)
        suspect_row.addWidget(self.set_aside_button)
        suspect_row.addStretch(1)
        grid.addLayout(suspect_row, 3, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        self._controls = grid

    # -- public API ------------------------------------------------------------------------------

    def threshold(self) -> float:
        return self._threshold

    def uncertain_low(self) -> float | None:
        return self._low

    def verdicts(self) -> Verdicts:
        return Verdicts(self._threshold, self._low)

    def set_threshold(self, value: float) -> None:
        """Move the threshold (normalised units); updates every control and emits once if it changed."""
        self._set_state(float(value), self._low)
        self._emit_final()

    def set_uncertain(self, low: float | None) -> None:
        """Enable the uncertain band from ``low`` (clamped to the threshold), or disable it with None."""
        self._set_state(self._threshold, None if low is None else float(low))
        self._emit_final()

    def set_rule(self, threshold: float, low: float | None) -> None:
        """Show a decision rule (threshold and band's lower end, or None) at once: one change, one emission, no
        moment with the new threshold and the old band."""
        self._set_state(float(threshold), None if low is None else float(low))
        self._emit_final()

    def forget_band(self) -> None:
        """Another project: its band, when turned on, starts from the default, not from the last project's."""
        self._last_low = DEFAULT_BAND_LOW
        self._push()

    def set_calibrated_band(self, low: float | None) -> None:
        """The loaded model's calibrated Review band's lower end (normalised), or None: what Reset goes back to."""
        self._calibrated_low = None if low is None or not 0 <= low < CALIBRATED_THRESHOLD else float(low)
        self.reset_threshold_button.setToolTip(
            "Threshold back to 0.50, Review band off" if self._calibrated_low is None else
            f"Threshold back to 0.50 and the Review band to the model's calibrated one (from {self._calibrated_low:.3f})")

    def reset(self) -> None:
        """Back to the calibration's rule: threshold 0.5, and the model's calibrated Review band (off without one)."""
        self._set_state(CALIBRATED_THRESHOLD, self._calibrated_low)
        self._emit_final()

    def set_reference_scores(self, good: Sequence[float], defects: Sequence[float] = ()) -> None:
        """Scores of held-out good images (green) and of labelled defects / NG images (red)."""
        self._good, self._defects = _finite(good), _finite(defects)
        self._rescale()

    def set_expected_rate(self, describe) -> None:
        """``describe(threshold) -> str | None``: the expected false-reject rate on new good parts at a
        normalised threshold (the model's calibration says it); the readout follows the threshold. None clears."""
        self._expected_rate_text = describe
        self._update_stats()

    def set_suspects_note(self, note: str | None) -> None:
        """The model's note on good training images that score like defects (None: there are none)."""
        self._suspects_note = note
        self._update_stats()

    def set_suspect_images(self, paths) -> None:
        """The files of the images the suspects note names; the Show button appears while there are any."""
        self._suspect_images = list(paths or [])
        self._next_suspect = 0
        self._name_show_button()
        self.show_suspects_button.setVisible(bool(self._suspect_images))
        self.set_aside_button.setVisible(bool(self._suspect_images))

    def _show_next_suspect(self) -> None:
        if self._suspect_images:
            self.show_suspect_requested.emit(self._suspect_images[self._next_suspect])
            self._next_suspect = (self._next_suspect + 1) % len(self._suspect_images)
            self._name_show_button()

    def _name_show_button(self) -> None:
        count = len(self._suspect_images)
        self.show_suspects_button.setText(
            "Show it" if count <= 1 else f"Show {self._next_suspect + 1} of {count}")

    def expected_rate_text(self) -> str | None:
        return self._expected_rate_text(self._threshold) if self._expected_rate_text else None

    def set_result_scores(self, scores: Sequence[float]) -> None:
        """Scores of the currently listed results (neutral outline)."""
        self._results = _finite(scores)
        self._rescale()

    def set_editable(self, editable: bool) -> None:
        """Read-only mode for roles that may not change the threshold: lines fixed, controls disabled."""
        self._editable = bool(editable)
        self._line.setMovable(self._editable)
        self._low_line.setMovable(self._editable)
        for widget in (self.threshold_slider, self.threshold_spin, self.uncertain_toggle,
                       self.reset_threshold_button):
            widget.setEnabled(self._editable)
        self._push()

    def is_editable(self) -> bool:
        return self._editable

    # -- state and sync --------------------------------------------------------------------------

    def _set_state(self, threshold: float, low: float | None, source: object = None) -> None:
        threshold = round(max(0.0, threshold), RULE_DECIMALS)
        if low is not None:
            low = round(min(max(0.0, low), threshold), RULE_DECIMALS)
            self._last_low = low
        self._threshold, self._low = threshold, low
        if threshold > self._xmax:
            self._rescale()
        self._push(source)

    def _push(self, source: object = None) -> None:
        """Show the state in every control except the one it came from, without re-entering handlers."""
        self._updating = True
        try:
            band = self._low is not None
            if source is not self.threshold_slider:
                self.threshold_slider.setValue(round(self._threshold / self._xmax * self.SLIDER_STEPS))
            if source is not self.threshold_spin:
                self.threshold_spin.setValue(self._threshold)
            self.uncertain_toggle.setChecked(band)
            self.uncertain_spin.setMaximum(self._threshold)
            if source is not self.uncertain_spin:
                self.uncertain_spin.setValue(self._low if band else min(self._last_low, self._threshold))
            self.uncertain_spin.setEnabled(band and self._editable)
            if source is not self._line:
                self._line.setValue(self._threshold)
            # visibility first: a hidden line's label ignores value changes
            self._low_line.setVisible(band)
            self._band.setVisible(band)
            self._low_line.setBounds((0.0, self._threshold))
            if band and source is not self._low_line:
                self._low_line.setValue(self._low)
            if band:
                self._low_line.label.valueChanged()
            if band:
                self._band.setRegion((self._low, self._threshold))
        finally:
            self._updating = False
        self._update_stats()

    def _rescale(self) -> None:
        peak = max((float(a.max()) for a in (self._good, self._defects, self._results) if a.size), default=0.0)
        xmax = max(self.MIN_RANGE, 1.1 * peak, 1.1 * self._threshold)
        xmax = float(np.ceil(xmax * 100) / 100)
        if xmax != self._xmax:
            self._xmax = xmax
            self._set_range()
        self._redraw_histograms()
        self._push()

    def _set_range(self) -> None:
        self._updating = True
        try:
            self.threshold_spin.setRange(0.0, self._xmax)
        finally:
            self._updating = False
        self._line.setBounds((0.0, self._xmax))
        self.plot.setXRange(0.0, self._xmax, padding=0.03)

    def _redraw_histograms(self) -> None:
        edges = np.linspace(0.0, self._xmax, self.BINS + 1)
        self._legend.clear()
        entries = (
            (self._good_item, self._good, "Good (reference)"),
            (self._defect_item, self._defects, "Defect / NG"),
            (self._result_item, self._results, "Current results"),
        )
        peak = 0.0
        for item, values, name in entries:
            if values.size:
                counts, _ = np.histogram(np.clip(values, 0.0, self._xmax), bins=edges)
                percent = counts * (100.0 / values.size)
                peak = max(peak, float(percent.max()))
                item.setData(edges, percent)
                item.show()
                self._legend.addItem(item, f"{name} ({values.size})")
            else:
                item.setData([], [])
                item.hide()
        empty = peak == 0.0
        self._empty_text.setVisible(empty)
        self._empty_text.setPos(self._xmax / 2, 50.0)
        self.plot.setYRange(0.0, 100.0 if empty else peak * 1.15, padding=0)

    def _update_stats(self) -> None:
        parts = []
        if self._good.size:
            flagged = int(np.count_nonzero(self._good >= self._threshold))
            # "(reference)" as the legend names them: the calibration's own evidence, not new parts (the expected
            # rate below is about those), so one above a 1 % threshold among 42 is no contradiction.
            parts.append(f"{flagged} of {self._good.size} good (reference) flagged NG "
                         f"({100 * flagged / self._good.size:.1f} %)")
            if self._low is not None:
                review = int(np.count_nonzero((self._good >= self._low) & (self._good < self._threshold)))
                parts.append(f"{review} good to review")
        if self._defects.size:
            caught = int(np.count_nonzero(self._defects >= self._threshold))
            parts.append(f"{caught} of {self._defects.size} defects caught ({100 * caught / self._defects.size:.0f} %)")
        text = "At this threshold: " + ", ".join(parts) if parts else ""
        expected = self._expected_rate_text(self._threshold) if self._expected_rate_text else None
        if expected:
            text = f"{text}\n{expected[0].upper()}{expected[1:]}" if text else f"{expected[0].upper()}{expected[1:]}"
        if self._suspects_note:
            text = f"{text}\n{self._suspects_note}" if text else self._suspects_note
        self.stats_label.setText(text)
        self.stats_label.setVisible(bool(text))

    # -- interaction handlers --------------------------------------------------------------------

    def _on_slider(self, value: int) -> None:
        if self._updating:
            return
        self._set_state(value / self.SLIDER_STEPS * self._xmax, self._low, source=self.threshold_slider)
        self._throttled_emit()

    def _on_spin(self, value: float) -> None:
        if self._updating:
            return
        self._set_state(value, self._low, source=self.threshold_spin)
        self._throttled_emit()

    def _on_line_moved(self, line: pg.InfiniteLine) -> None:
        if self._updating:
            return
        self._set_state(line.value(), self._low, source=self._line)
        self._throttled_emit()

    def _on_low_line_moved(self, line: pg.InfiniteLine) -> None:
        if self._updating or self._low is None:
            return
        self._set_state(self._threshold, line.value(), source=self._low_line)
        self._throttled_emit()

    def _on_low_spin(self, value: float) -> None:
        if self._updating or self._low is None:
            return
        self._set_state(self._threshold, value, source=self.uncertain_spin)
        self._throttled_emit()

    def _on_toggle(self, checked: bool) -> None:
        if self._updating:
            return
        low = None
        if checked:
            low = self._last_low if self._last_low < self._threshold else round(0.8 * self._threshold, RULE_DECIMALS)
        self._set_state(self._threshold, low)
        self._emit_final()

    def _on_drag_finished(self, *_args) -> None:
        self._push()  # snap the dragged line onto the rounded value
        self._emit_final()

    # -- emission --------------------------------------------------------------------------------

    def _emit_final(self) -> None:
        """Drop any pending throttled emission and emit the current rule now if it changed."""
        self._throttled_emit.cancel()
        self._emit_if_changed()

    def _emit_if_changed(self) -> None:
        verdicts = self.verdicts()
        if verdicts != self._last_emitted:
            self._last_emitted = verdicts
            self.verdicts_changed.emit(verdicts)
