"""The Records window runs its searches and report exports in background jobs and stays responsive."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import pytest
from PySide6.QtCore import QTimer

from anomalyapp.services import project as projects
from anomalyapp.services.records import InspectionRecord, verdict_for

pytestmark = pytest.mark.gui


@pytest.fixture
def access(qtbot, tmp_path, demo_line, patchcore_model):
    """A single-user project with a trained model and 40 recorded inspections of the demo line's images."""
    from anomalyapp.gui.access import AccessController
    from anomalyapp.gui.app import create_application

    create_application()
    project = projects.create_project(tmp_path / "project", "washers", demo_line / "train" / "good")
    shutil.copytree(patchcore_model, project.models_dir / "trained")
    project.current_model = "trained"
    project.save()
    projects.set_up_single_user(project, "solo")
    controller = AccessController()
    controller.open_project(project)
    records = controller.records
    version = records.add_version("trained", None, "trained", controller.user)
    images = sorted(p for p in (demo_line / "test").rglob("*.png"))
    start = datetime.now().astimezone() - timedelta(hours=1)
    rows = [InspectionRecord(str(path), score, verdict_for(score, 0.5, None), 0.5, start + timedelta(seconds=i),
                             model_version_id=version.id, user_id=controller.user.id)
            for i, path in enumerate(images * 2)
            for score in [0.9 if "/good/" not in str(path) else 0.2]]
    records.store.record_inspections(rows)
    yield controller
    controller.close()


def _dialog(qtbot, access):
    from anomalyapp.gui.widgets.records_dialog import RecordsDialog

    dialog = RecordsDialog(access.records, access)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_a_search_arrives_from_a_background_job_and_a_newer_one_supersedes_it(qtbot, access):
    total = access.records.count()
    dialog = _dialog(qtbot, access)
    assert dialog.table.rowCount() == 0 and dialog.is_busy() and dialog.busy_bar.isVisible()  # not on the GUI thread
    qtbot.waitUntil(lambda: dialog.table.rowCount() == total and not dialog.is_busy(), timeout=20000)
    assert f"{total} inspections" in dialog.count_label.text() and not dialog.busy_bar.isVisible()

    shown = []
    dialog.searched.connect(shown.append)
    dialog.name.setText("no such file")
    dialog.search()
    dialog.name.setText("000")
    dialog.search()  # supersedes the first: only its rows reach the table
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=20000)
    expected = sum("000" in name for name in (dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())))
    assert shown == [dialog.table.rowCount()] and expected == dialog.table.rowCount() > 0


def test_the_pdf_is_written_by_a_worker_while_the_event_loop_keeps_running(qtbot, access, tmp_path):
    dialog = _dialog(qtbot, access)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=20000)
    ticks_while_busy = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks_while_busy.append(1) if dialog.is_busy() else None)
    timer.start()
    target = tmp_path / "report.pdf"
    with qtbot.waitSignal(dialog.exported, timeout=120000) as written:
        dialog.export_pdf(str(target))
        assert not target.exists() and not dialog.export_buttons[0].isEnabled()
    timer.stop()
    assert written.args == [str(target)] and target.read_bytes().startswith(b"%PDF")
    assert len(ticks_while_busy) >= 3  # the GUI thread kept serving its timers during the render
    assert "report written" in dialog.count_label.text() and dialog.export_buttons[0].isEnabled()

    with qtbot.waitSignal(dialog.exported, timeout=60000):
        dialog.export_csv(str(tmp_path / "inspections.csv"))
    assert (tmp_path / "inspections.csv").read_text(encoding="utf-8-sig").count("\n") == access.records.count() + 1


def test_a_failed_export_names_the_file_and_leaves_the_dialog_usable(qtbot, access, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warnings.append((title, text)))
    dialog = _dialog(qtbot, access)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=20000)
    (tmp_path / "blocker").write_text("a file where the folder should be")
    dialog.export_csv(str(tmp_path / "blocker" / "inspections.csv"))
    qtbot.waitUntil(lambda: bool(warnings) and not dialog.is_busy(), timeout=20000)
    assert warnings[0][0] == "Export" and "inspections.csv" in warnings[0][1]
    assert all(button.isEnabled() for button in dialog.export_buttons)


def test_model_versions_keep_their_short_columns_whole_beside_a_long_change(qtbot, access):
    """A correction's change names what it taught; it takes the width left, cut at its end with the whole text in
    its tooltip, and the version, who and when stay whole on one line, with no sideways scrolling."""
    records = access.records
    first = records.current_version()
    change = "marked good: " + ", ".join(f"part_{i:04d}_station_B_camera_2.png" for i in range(5)) + \
        " (autoencoder fine-tuned for 20 epochs, rehearsing 4096 training vectors) — 20261202-063247-230-autoencoder"
    models = access.records.root / "models"
    shutil.copytree(models / "trained", models / "corrected")
    records.add_version("corrected", first.id, change, access.user)
    dialog = _dialog(qtbot, access)
    dialog.resize(1100, 600)
    from PySide6.QtWidgets import QTabWidget

    tabs = dialog.findChild(QTabWidget)
    tabs.setCurrentIndex(next(i for i in range(tabs.count()) if tabs.tabText(i) == "Model versions"))
    qtbot.waitUntil(lambda: dialog.versions_table.isVisible(), timeout=5000)
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=20000)  # its first search ends before the dialog does
    dialog.refresh_versions()
    table = dialog.versions_table
    columns = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    metrics = table.fontMetrics()
    for row in range(table.rowCount()):
        for name in ("Version", "Who", "When", "Rule"):
            text = table.item(row, columns.index(name)).text()
            assert metrics.horizontalAdvance(text) + 6 <= table.columnWidth(columns.index(name)), (name, text)
    long_change = table.item(table.rowCount() - 1, columns.index("Change"))
    assert change in long_change.toolTip()
    assert not table.horizontalScrollBar().isVisible()


def test_an_inspection_is_listed_with_the_rule_it_was_judged_with(qtbot, access):
    """A part judged Review at 0.45 with the threshold at 0.5 is explained only by the band it was judged with."""
    version = access.records.current_version()
    access.records.store.record_inspections([InspectionRecord(
        "/line/part-review.png", 0.45, verdict_for(0.45, 0.5, 0.42), 0.5, uncertain_low=0.42,
        model_version_id=version.id, user_id=access.user.id)])
    dialog = _dialog(qtbot, access)
    dialog.name.setText("part-review")
    dialog.search()
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1 and not dialog.is_busy(), timeout=20000)
    columns = [dialog.table.horizontalHeaderItem(c).text() for c in range(dialog.table.columnCount())]
    assert dialog.table.item(0, columns.index("Verdict")).text() == "Review"
    assert dialog.table.item(0, columns.index("Rule")).text() == "0.500 (review from 0.420)"
