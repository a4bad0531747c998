"""The window with calibrated verdicts: evaluate at the working threshold and export, the training panel's
false-reject rate, and the threshold proposal from every label re-scored by the model in use."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from anomalyapp.data.datasets import discover_dataset
from anomalyapp.services import project as projects

pytestmark = pytest.mark.gui


def _load(qtbot, window, project):
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=30000):
        window.set_project(project)


def _table(plots) -> dict[str, str]:
    table = plots.metrics_table
    return {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}


def test_evaluate_in_the_window_at_the_working_threshold_and_export_png_and_csv(
        qtbot, window, project_with_model, demo_line, tmp_path):
    from anomalyapp.gui import window_dialogs

    _load(qtbot, window, project_with_model)
    records = window.access.records
    records.set_threshold(window.access.user, 0.6, None, reason="test", project=window.project)
    window.review.show_decision_rule()
    qtbot.waitUntil(lambda: window.results_panel.model().verdicts().threshold == pytest.approx(0.6), timeout=5000)

    with qtbot.waitSignal(window.evaluation.finished, timeout=120000) as finished:
        window.inspection_flow.evaluate(demo_line)
    result = finished.args[0]
    assert result["threshold"] == pytest.approx(0.6)
    assert "evaluation done" in window.status_line.message()  # not the last step's "pixel metrics" (trap 5)
    qtbot.waitUntil(lambda: getattr(window, "evaluation_plots", None) is not None, timeout=5000)
    table = _table(window.evaluation_plots)
    assert table["Threshold used"] == "0.600"
    assert table["False-reject rate (good judged NG)"] == f"{result['false_reject_rate']:.3f}"
    assert table["Recall at 1 % false rejects"] == f"{result['recall_at_false_reject_rate']['0.01']:.3f}"
    assert table["Recall at 5 % false rejects"] == f"{result['recall_at_false_reject_rate']['0.05']:.3f}"
    assert table["Recall"] == f"{result['recall']:.3f}"

    png, scores = tmp_path / "out" / "evaluation.png", tmp_path / "out" / "scores.csv"
    window_dialogs.export_evaluation_png(window, window.evaluation_plots, str(png))
    window_dialogs.export_evaluation_csv(window, result, str(scores))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 5000
    rows = list(csv.DictReader(scores.open(encoding="utf-8")))
    assert len(rows) == len(discover_dataset(demo_line).test) == result["images"]
    for row in rows:  # verdicts at the working threshold
        assert row["verdict"] == ("NG" if float(row["score"]) >= 0.6 else "OK")

    # The images behind a confusion cell open in the window: scored and listed (trap 5).
    plots = window.evaluation_plots
    assert len(result["roc"]["thresholds"]) == len(result["roc"]["fpr"])
    plots.show_cell_images(next(r for r in range(plots.metrics_table.rowCount())
                                if plots.metrics_table.item(r, 0).text().startswith("TN")))
    listed = plots.listed_paths()
    assert len(listed) == result["confusion_matrix"][0][0] > 0
    earlier = sorted((demo_line / "test").glob("*/*.png"))[-2:]  # results already listed, one of them selected
    window.inspect([str(p) for p in earlier])
    qtbot.waitUntil(lambda: window.results_panel.model().rowCount() == 2 and bool(window.results_panel.current_row()),
                    timeout=60000)
    plots.open_images_button.click()
    qtbot.waitUntil(lambda: window.results_panel.model().rowCount() == 2 + len(listed), timeout=60000)
    # Open in viewer opens: the first of the images is selected and shown, not left at the end of the list
    assert window.results_panel.current_row().path == Path(listed[0])
    qtbot.waitUntil(lambda: window.viewer.title_label.text().startswith(Path(listed[0]).name), timeout=10000)


def test_the_training_panel_sets_the_false_reject_rate_of_the_training(qtbot, window, project_with_model):
    _load(qtbot, window, project_with_model)
    window.training_panel.false_reject_rate.setValue(5.0)
    values = window.training_panel.settings_values()
    assert values["false_reject_rate"] == pytest.approx(0.05)
    request = window.trainer._request(window.project, values)
    assert request.calibration.target_false_reject_rate == pytest.approx(0.05)
    window.training_panel.set_settings(projects.TrainingSettings(false_reject_rate=0.02))
    assert window.training_panel.false_reject_rate.value() == pytest.approx(2.0)


def test_the_records_window_proposes_from_every_label_scored_by_the_model_in_use(
        qtbot, window, project_with_model, demo_line):
    from pathlib import Path

    _load(qtbot, window, project_with_model)
    folders = [str(p) for p in sorted((demo_line / "test").iterdir())]
    expected = sum(len(list(Path(f).iterdir())) for f in folders)
    window.inspect(folders)
    model = window.results_panel.model()
    qtbot.waitUntil(lambda: model.rowCount() == expected and all(
        model.row_at(i).record_id is not None for i in range(model.rowCount())), timeout=60000)
    records = window.access.records
    for i in range(model.rowCount()):
        row = model.row_at(i)
        records.label(row.record_id, "NG" if "/good/" not in str(row.path) else "OK", user=window.access.user)
    window.show_records()
    dialog = window.records_dialog
    qtbot.waitUntil(lambda: dialog.labelled_scores is not None, timeout=60000)
    assert len(dialog.labelled_scores.pairs) == expected
    proposal = dialog._proposal
    assert proposal.target_false_reject_rate == pytest.approx(0.01)
    assert proposal.labelled == expected and proposal.proposed_false_reject_rate <= 0.01
    assert "Proposed threshold" in dialog.threshold_text.text() and "would have" in dialog.threshold_text.text()
    # shares of good parts are written as the target they are compared with: "at most 1.0 %", "judged NG 0.0 %"
    text = dialog.threshold_text.text()
    assert "at most 1.0 % of the labelled good parts" in text
    assert re.search(r"good parts judged NG \d+\.\d %", text) and not re.search(r"judged NG 0\.\d{3}", text)
