"""ThresholdPanel: line, slider and spins stay in sync without loops; verdicts_changed is throttled but final."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyapp.gui.widgets.results_table import Verdicts
from anomalyapp.gui.widgets.threshold_panel import ThresholdPanel

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot) -> ThresholdPanel:
    p = ThresholdPanel()
    qtbot.addWidget(p)
    p.resize(640, 380)
    return p


@pytest.fixture
def emitted(panel) -> list[Verdicts]:
    out: list[Verdicts] = []
    panel.verdicts_changed.connect(out.append)
    return out


def _slider_for(panel: ThresholdPanel, value: float) -> int:
    return round(value / 1.5 * 1000)  # default range 0..1.5


def test_initial_state(panel, emitted):
    assert panel.threshold() == 0.5 and panel.uncertain_low() is None
    assert panel.verdicts() == Verdicts()
    assert panel.threshold_slider.value() == _slider_for(panel, 0.5)
    assert panel.threshold_spin.value() == pytest.approx(0.5)
    assert panel._line.value() == pytest.approx(0.5)
    assert not panel.uncertain_toggle.isChecked() and not panel.uncertain_spin.isEnabled()
    assert not panel._low_line.isVisible() and not panel._band.isVisible()
    assert panel.threshold_spin.decimals() == 3
    for name in ("threshold_plot", "threshold_slider", "threshold_spin", "uncertain_toggle", "uncertain_spin",
                 "reset_threshold_button"):
        assert panel.findChild(object, name) is not None, name
    assert emitted == []


def test_slider_moves_spin_and_line_and_emits(qtbot, panel):
    with qtbot.waitSignal(panel.verdicts_changed, timeout=1000) as blocker:
        panel.threshold_slider.setValue(_slider_for(panel, 0.75))
    assert blocker.args[0] == Verdicts(0.75)
    assert panel.threshold_spin.value() == pytest.approx(0.75)
    assert panel._line.value() == pytest.approx(0.75)
    assert "0.75" in panel._line.label.toPlainText()


def test_spin_moves_slider_and_line(qtbot, panel):
    with qtbot.waitSignal(panel.verdicts_changed, timeout=1000) as blocker:
        panel.threshold_spin.setValue(0.3)
    assert blocker.args[0].threshold == pytest.approx(0.3)
    assert panel.threshold_slider.value() == _slider_for(panel, 0.3)
    assert panel._line.value() == pytest.approx(0.3)


def test_dragging_the_line_moves_slider_and_spin_and_the_final_value_is_emitted(qtbot, panel, emitted):
    for value in np.linspace(0.5, 0.9, 41):  # a drag: many positions within the throttle window
        panel._line.setValue(float(value))
    assert panel.threshold_spin.value() == pytest.approx(0.9)
    assert panel.threshold_slider.value() == _slider_for(panel, 0.9)
    assert 1 <= len(emitted) < 41  # throttled
    with qtbot.waitSignal(panel.verdicts_changed, timeout=1000) as blocker:
        panel._line.sigPositionChangeFinished.emit(panel._line)
    assert blocker.args[0] == Verdicts(0.9)
    assert emitted[-1] == Verdicts(0.9)


def test_throttled_trailing_emission_is_not_lost(qtbot, panel, emitted):
    for value in range(300, 420, 2):
        panel.threshold_slider.setValue(value)
    final = panel.threshold()
    assert final == pytest.approx(round(418 / 1000 * 1.5, 3))
    qtbot.waitUntil(lambda: emitted and emitted[-1].threshold == final, timeout=1000)
    assert len(emitted) < 60


def test_slider_release_flushes_at_once(qtbot, panel, emitted):
    panel.threshold_slider.setValue(400)
    panel.threshold_slider.setValue(450)  # pending inside the throttle window
    panel.threshold_slider.sliderReleased.emit()
    assert emitted[-1] == Verdicts(round(450 / 1000 * 1.5, 3))


def test_programmatic_set_threshold_emits_once(qtbot, panel, emitted):
    panel.set_threshold(0.62)
    assert emitted == [Verdicts(0.62)]
    assert panel.threshold_slider.value() == _slider_for(panel, 0.62)
    assert panel._line.value() == pytest.approx(0.62)
    panel.set_threshold(0.62)
    assert len(emitted) == 1  # unchanged: no emission
    qtbot.wait(50)
    assert len(emitted) == 1  # and nothing trailing


def test_uncertain_band(qtbot, panel, emitted):
    with qtbot.waitSignal(panel.verdicts_changed, timeout=1000) as blocker:
        panel.uncertain_toggle.setChecked(True)
    low = blocker.args[0].uncertain_low
    assert low is not None and low < panel.threshold()
    assert panel._low_line.isVisible() and panel._band.isVisible() and panel.uncertain_spin.isEnabled()
    assert panel._band.getRegion() == pytest.approx((low, 0.5))

    panel.set_uncertain(0.3)
    assert emitted[-1] == Verdicts(0.5, 0.3)
    assert panel.uncertain_spin.value() == pytest.approx(0.3)
    assert panel._low_line.value() == pytest.approx(0.3)
    assert panel._low_line.label.toPlainText() == "review 0.30"

    with qtbot.waitSignal(panel.verdicts_changed, timeout=1000) as blocker:
        panel.uncertain_spin.setValue(0.35)
    assert blocker.args[0] == Verdicts(0.5, 0.35)
    panel._low_line.setValue(0.42)
    panel._low_line.sigPositionChangeFinished.emit(panel._low_line)
    assert emitted[-1] == Verdicts(0.5, 0.42)
    assert panel.uncertain_spin.value() == pytest.approx(0.42)

    panel.set_threshold(0.2)  # below the band's low bound: the band collapses onto the threshold
    assert panel.uncertain_low() == pytest.approx(0.2)
    assert emitted[-1] == Verdicts(0.2, 0.2)

    panel.set_uncertain(None)
    assert not panel.uncertain_toggle.isChecked() and not panel._low_line.isVisible()
    assert emitted[-1] == Verdicts(0.2, None)


def test_reset_returns_to_calibrated(qtbot, panel, emitted):
    panel.set_threshold(0.8)
    panel.set_uncertain(0.6)
    with qtbot.waitSignal(panel.verdicts_changed, timeout=1000) as blocker:
        panel.reset_threshold_button.click()
    assert blocker.args[0] == Verdicts(0.5, None)
    assert panel.threshold() == 0.5 and panel.uncertain_low() is None
    assert panel.threshold_spin.value() == pytest.approx(0.5)
    assert not panel.uncertain_toggle.isChecked()
    # With a model whose calibration gives a Review band, Reset goes back to that band too.
    panel.set_calibrated_band(0.44)
    assert "from 0.440" in panel.reset_threshold_button.toolTip()
    panel.set_threshold(0.8)
    panel.set_uncertain(None)
    with qtbot.waitSignal(panel.verdicts_changed, timeout=1000) as blocker:
        panel.reset_threshold_button.click()
    assert blocker.args[0] == Verdicts(0.5, 0.44) and panel.uncertain_toggle.isChecked()
    panel.set_calibrated_band(None)  # another model, or none: the band goes off again
    panel.reset_threshold_button.click()
    assert panel.verdicts() == Verdicts(0.5, None)


def test_read_only_mode(panel):
    panel.set_editable(False)
    assert not panel.is_editable()
    assert not panel._line.movable and not panel._low_line.movable
    for widget in (panel.threshold_slider, panel.threshold_spin, panel.uncertain_toggle, panel.uncertain_spin,
                   panel.reset_threshold_button):
        assert not widget.isEnabled()
    panel.set_threshold(0.7)  # the window may still show another role's threshold
    assert panel.threshold_spin.value() == pytest.approx(0.7)
    panel.set_editable(True)
    assert panel._line.movable and panel.threshold_slider.isEnabled() and not panel.uncertain_spin.isEnabled()


def test_scores_extend_the_range_without_emitting(qtbot, panel, emitted):
    rng = np.random.default_rng(0)
    panel.set_reference_scores(rng.gamma(3, 0.08, 200), [0.9, 1.2, 3.0])
    panel.set_result_scores(rng.gamma(3, 0.1, 100))
    assert emitted == []
    assert panel.threshold() == 0.5
    assert panel.threshold_spin.maximum() == pytest.approx(3.3)
    assert panel.threshold_slider.value() == round(0.5 / 3.3 * 1000)
    x, y = panel._good_item.getData()
    assert x.size == y.size + 1 and y.sum() == pytest.approx(100.0)  # percent of the good images
    assert panel._defect_item.isVisible() and panel._result_item.isVisible()
    assert "of 3 defects caught" in panel.stats_label.text()
    panel.set_threshold(5.0)  # beyond the range: the range grows
    assert panel.threshold_spin.maximum() >= 5.0 and panel.threshold_spin.value() == pytest.approx(5.0)


def test_empty_scores_show_a_hint(panel):
    assert panel._empty_text.isVisible()
    panel.set_reference_scores([0.1, 0.2])
    assert not panel._empty_text.isVisible() and not panel._defect_item.isVisible()


def test_screenshot(qtbot, panel, tmp_path):
    rng = np.random.default_rng(1)
    panel.set_reference_scores(rng.gamma(3, 0.08, 300), rng.normal(0.9, 0.25, 40).clip(0))
    panel.set_result_scores(rng.gamma(3, 0.1, 500))
    panel.set_threshold(0.55)
    panel.set_uncertain(0.42)
    panel.show()
    image = panel.grab()
    assert not image.isNull()
    assert image.save(str(tmp_path / "threshold_panel.png"))


def test_line_labels_follow_programmatic_values(panel):
    panel.set_uncertain(0.42)  # enabling the band from off shows the right value at once
    assert panel._low_line.label.toPlainText() == "review 0.42"
    panel.set_threshold(0.8)
    assert panel._line.label.toPlainText() == "threshold 0.80"


def test_expected_false_reject_readout_follows_the_threshold(qtbot, panel):
    from anomalyapp.engine.calibration import calibrate

    good = np.random.default_rng(0).gamma(4.0, 1.0, 80)
    calibration = calibrate(good, good, source="synthetic", target_false_reject_rate=0.01)
    panel.set_expected_rate(calibration.describe_expected_false_rejects)
    at_calibrated = panel.expected_rate_text()
    assert at_calibrated.startswith("expected false rejects 1.0 %")
    assert "Expected false rejects 1.0 %" in panel.stats_label.text()
    panel.set_threshold(0.3)
    lower = panel.expected_rate_text()
    assert lower != at_calibrated
    assert lower in panel.stats_label.text().lower() or lower[1:] in panel.stats_label.text()
    assert float(lower.split()[3]) > 1.0  # a lower threshold expects more false rejects
    panel.set_expected_rate(None)
    assert "xpected" not in panel.stats_label.text()


def test_a_rule_shown_at_once_is_one_change_and_a_new_project_band_starts_from_the_default(panel, emitted):
    """Another project's rule replaces threshold and band together (never the new threshold with the old band);
    and a band turned on there starts from the default, not from the last project's."""
    panel.set_rule(0.6, 0.37)
    emitted.clear()
    panel.set_rule(0.55, None)
    assert emitted == [Verdicts(0.55, None)]
    panel.forget_band()
    panel.uncertain_toggle.setChecked(True)
    assert panel.uncertain_low() == pytest.approx(0.4)


def test_show_gives_one_named_image_per_click_and_says_which(panel, qtbot):
    from PySide6.QtCore import Qt

    shown = []
    panel.show_suspect_requested.connect(shown.append)
    panel.set_suspect_images(["a.png", "b.png", "c.png"])
    button = panel.show_suspects_button
    assert button.text() == "Show 1 of 3"
    for expected in ("a.png", "b.png", "c.png", "a.png"):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert shown[-1] == expected
    assert button.text() == "Show 2 of 3"
    panel.set_suspect_images(["d.png"])  # a new model's note starts again
    assert button.text() == "Show it"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert shown[-1] == "d.png" and button.text() == "Show it"
