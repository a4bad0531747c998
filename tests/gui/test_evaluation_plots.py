"""EvaluationPlots: metrics table with n/a, ROC title and points, histogram by class."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyapp.engine import metrics
from anomalyapp.gui.widgets.evaluation_plots import METRIC_ROWS, EvaluationPlots

pytestmark = pytest.mark.gui


def _result(**overrides) -> dict:
    rng = np.random.default_rng(3)
    good, bad = rng.gamma(3, 0.08, 30), rng.normal(0.9, 0.3, 20).clip(0)
    per_image = [{"path": f"good/{i}.png", "defect_type": "good", "score": float(s)} for i, s in enumerate(good)]
    per_image += [{"path": f"scratch/{i}.png", "defect_type": "scratch", "score": float(s)} for i, s in enumerate(bad)]
    per_image.append({"path": "broken.png", "defect_type": "good", "score": None})
    result = {
        "image_auroc": 0.97341, "pixel_auroc": None, "aupro": 0.8123, "f1_max": 0.92, "precision": 0.9,
        "recall": 0.88, "accuracy": 0.91, "f1": 0.89, "confusion_matrix": [[28, 2], [3, 17]], "threshold": 0.5,
        "per_image": per_image,
    }
    fpr, tpr, thresholds = metrics.roc_curve([0] * len(good) + [1] * len(bad), np.r_[good, bad])  # as the service
    result["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                     "thresholds": [float(t) if np.isfinite(t) else None for t in thresholds]}
    result.update(overrides)
    return result


@pytest.fixture
def plots(qtbot) -> EvaluationPlots:
    widget = EvaluationPlots()
    qtbot.addWidget(widget)
    widget.resize(1000, 380)
    return widget


def _table(widget: EvaluationPlots) -> dict[str, str]:
    table = widget.metrics_table
    return {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}


def test_the_widget_draws_the_services_roc_and_never_recomputes_it():
    import anomalyapp.gui.widgets.evaluation_plots as module

    assert not hasattr(module, "roc_points") and not hasattr(module, "roc_auc")  # one ROC: the engine's


def test_metrics_table_with_na(plots):
    assert plots.metrics_table.objectName() == "metrics_table"
    assert set(_table(plots).values()) == {"n/a"}  # before any result
    plots.show_evaluation(_result())
    table = _table(plots)
    assert len(table) == len(METRIC_ROWS)
    assert table["Image AUROC"] == "0.973"
    assert table["Pixel AUROC"] == "n/a"
    assert table["AUPRO @ 0.3 FPR"] == "0.812"
    assert table["F1-max"] == "0.920" and table["F1"] == "0.890"
    assert table["Precision"] == "0.900" and table["Recall"] == "0.880" and table["Accuracy"] == "0.910"
    assert (table["TN (good passed)"], table["FP (good rejected)"]) == ("28", "2")
    assert (table["FN (defect passed)"], table["TP (defect rejected)"]) == ("3", "17")
    assert table["Seen by the model"] == "n/a"  # an evaluation saved before the check
    assert table["Expected false-reject rate"] == "n/a" and plots.images_caption.text().startswith("Click a TN/FP")
    plots.show_evaluation(_result(expected_false_reject_rate=[0.01, 0.0006, 0.0321]))
    assert _table(plots)["Expected false-reject rate"] == "0.010 (0.001-0.032)"
    plots.show_evaluation(_result(learnt_images=[]))
    assert (_table(plots)["Seen by the model"], _table(plots)["Image AUROC without them"]) == ("0", "n/a")
    plots.show_evaluation(_result(learnt_images=[{"path": "good/3.png", "how": "taught"}],
                                  unseen={"images": 49, "image_auroc": 0.9612}))
    table = _table(plots)
    assert (table["Seen by the model"], table["Image AUROC without them"]) == ("1: figures flattered", "0.961")
    per_image = _result()["per_image"]
    per_image[3]["learnt"] = "taught"  # as the service marks the image it names
    plots.show_evaluation(_result(per_image=per_image, learnt_images=[{"path": "good/3.png", "how": "taught"}]))
    assert "Seen by the model row" in plots.images_caption.text()  # the hint says the row lists them
    plots.show_cell_images(next(r for r, (label, _, _) in enumerate(METRIC_ROWS) if label == "Seen by the model"))
    listed = [plots.images_list.item(i).text() for i in range(plots.images_list.count())]
    assert len(listed) == 1 and "3.png" in listed[0]
    assert plots.images_caption.text().startswith("1 test image the model learnt from")


def test_all_none_and_missing_keys(plots):
    plots.show_evaluation({"image_auroc": None, "confusion_matrix": None, "per_image": []})
    assert set(_table(plots).values()) == {"n/a"}
    assert "n/a" in plots.roc.getPlotItem().titleLabel.text


def test_roc_title_curve_and_histogram(plots):
    plots.show_evaluation(_result())
    assert "AUROC 0.973" in plots.roc.getPlotItem().titleLabel.text
    fpr, tpr = plots._roc_item.getData()
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    np.testing.assert_allclose(fpr, _result()["roc"]["fpr"])
    x, y = plots._operating_point.getData()
    assert (x[0], y[0]) == pytest.approx((2 / 30, 17 / 20))  # from the confusion matrix at the threshold
    _, good = plots._good_item.getData()
    _, bad = plots._defect_item.getData()
    assert good.sum() == pytest.approx(100.0) and bad.sum() == pytest.approx(100.0)  # None score skipped
    assert plots._threshold_line.value() == pytest.approx(0.5)


def test_single_class_does_not_fail(plots):
    result = _result(image_auroc=None)
    result["per_image"] = [r for r in result["per_image"] if r["defect_type"] == "good"]
    result["roc"] = None
    plots.show_evaluation(result)
    assert "AUROC n/a" in plots.roc.getPlotItem().titleLabel.text
    assert plots._roc_item.getData()[0] is None or len(plots._roc_item.getData()[0]) == 0


def test_screenshot(plots, tmp_path):
    plots.show_evaluation(_result())
    plots.show()
    image = plots.grab()
    assert not image.isNull()
    assert image.save(str(tmp_path / "evaluation_plots.png"))


def _paths_with(result: dict, defective: bool, judged_ng: bool, threshold: float) -> list[str]:
    return [r["path"] for r in result["per_image"] if r["score"] is not None
            and (r["defect_type"] != "good") == defective and (r["score"] >= threshold) == judged_ng]


def test_clicking_a_confusion_cell_lists_its_images_and_opening_emits_their_paths(plots, qtbot):
    from PySide6.QtCore import Qt

    result = _result(threshold=0.4)
    plots.resize(1000, 700)
    plots.show()
    plots.show_evaluation(result)
    table = plots.metrics_table
    labels = [label for label, _key, _kind in METRIC_ROWS]
    for label, defective, judged_ng in (("TN (good passed)", False, False), ("FP (good rejected)", False, True),
                                        ("FN (defect passed)", True, False), ("TP (defect rejected)", True, True)):
        cell = table.item(labels.index(label), 1)
        table.scrollToItem(cell)
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=table.visualItemRect(cell).center())
        expected = _paths_with(result, defective, judged_ng, 0.4)
        assert expected, label  # the data has images in every cell at this threshold
        assert plots.listed_paths() == expected, label
    # The last click was TP: the open action emits exactly its paths, a double-click the one clicked.
    with qtbot.waitSignal(plots.images_requested, timeout=1000) as opened:
        qtbot.mouseClick(plots.open_images_button, Qt.MouseButton.LeftButton)
    assert opened.args == [_paths_with(result, True, True, 0.4)]
    images = plots.images_list
    second = images.item(1)
    images.scrollToItem(second)
    centre = images.visualItemRect(second).center()
    qtbot.mouseClick(images.viewport(), Qt.MouseButton.LeftButton, pos=centre)  # a view's double-click follows a press
    with qtbot.waitSignal(plots.images_requested, timeout=1000) as opened:
        qtbot.mouseDClick(images.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert opened.args == [[second.data(Qt.ItemDataRole.UserRole)]]


def test_a_roc_point_lists_the_good_above_its_threshold_and_the_defects_below(plots):
    result = _result()
    plots.show_evaluation(result)
    index = len(result["roc"]["fpr"]) // 2
    threshold = result["roc"]["thresholds"][index]
    plots._roc_points.sigClicked.emit(plots._roc_points, plots._roc_points.points()[index:index + 1], None)
    expected = _paths_with(result, False, True, threshold) + _paths_with(result, True, False, threshold)
    assert plots.listed_paths() == expected
    good = sum(r["defect_type"] == "good" for r in result["per_image"] if r["score"] is not None)
    assert len(_paths_with(result, False, True, threshold)) == pytest.approx(result["roc"]["fpr"][index] * good)
    plots.show_roc_point_images(0)  # threshold +inf: nothing judged NG, every defect passed
    assert plots.listed_paths() == _paths_with(result, True, False, np.inf)


def test_every_metric_name_and_value_is_shown_whole_in_the_evaluation_window(qtbot, plots):
    """At the evaluation window's size, with the longest values a result gives, no name is squeezed to "I…" (a
    long value once took the names' width) and no value is cut."""
    from PySide6.QtGui import QFont, QFontMetrics

    plots.resize(1080, 560)  # the evaluation dialog's (1100 x 650) less its buttons and margins
    plots.show()
    qtbot.waitExposed(plots)
    plots.show_evaluation(_result(
        learnt_images=[{"path": f"good/{i}.png", "how": "taught"} for i in range(12)],
        unseen={"images": 38, "image_auroc": 0.9612}, expected_false_reject_rate=[0.0123, 0.0004, 0.1234],
        false_rejects_against_expected={"judged_ng": 14, "good_images": 120, "expected_low": 0, "expected_high": 3,
                                        "within": False}))
    table = plots.metrics_table
    names = QFontMetrics(table.font())
    bold = QFont(table.font())
    bold.setBold(True)
    values = QFontMetrics(bold)
    padding = 6  # the cell's text margins, 3 px a side (what ResizeToContents adds)
    for row in range(table.rowCount()):
        name, value = table.item(row, 0).text(), table.item(row, 1).text()
        assert names.horizontalAdvance(name) + padding <= table.columnWidth(0), name
        assert values.horizontalAdvance(value) + padding <= table.columnWidth(1), (name, value)
    seen = next(r for r, (label, _, _) in enumerate(METRIC_ROWS) if label == "Seen by the model")
    assert "click this row to list them" in table.item(seen, 1).toolTip()
