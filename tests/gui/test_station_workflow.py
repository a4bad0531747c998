"""The station's workflow traps, driven in the real window as a technician would: switching project, quitting
or cancelling during a training, inspecting a folder tree, creating a project."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from anomalyapp.services import project as projects
from anomalyapp.services.records import InspectionQuery, RecordsService

pytestmark = pytest.mark.gui


def _load(qtbot, window, project):
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=30000):
        window.set_project(project)


def _inspect_folder(qtbot, window, monkeypatch, folder: Path) -> int:
    """Ctrl+I, choose ``folder`` (the folder chooser is the one part a headless test cannot click)."""
    expected = sum(1 for p in folder.rglob("*.png"))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    window.inspect_folder_action.trigger()
    qtbot.waitUntil(lambda: window.results_panel.model().rowCount() == expected, timeout=60000)
    qtbot.waitUntil(lambda: not window.inspection._job.running, timeout=10000)
    return expected


def _start_and_cancel_training(qtbot, window):
    qtbot.waitUntil(lambda: not window.cancel_action.isEnabled(), timeout=5000)  # nothing runs: nothing to cancel
    # A flag, not waitSignal: pytest-qt's disconnect of a signal the training thread is still emitting hung once.
    progressed = []
    window.trainer.progress.connect(lambda *_: progressed.append(True))
    window.train_action.trigger()
    qtbot.waitUntil(lambda: bool(progressed), timeout=30000)
    assert window.cancel_action.isEnabled()
    with qtbot.waitSignal(window.trainer.ended, timeout=30000) as ended:
        window.cancel_action.trigger()
    qtbot.waitUntil(lambda: not window.cancel_action.isEnabled(), timeout=5000)
    return ended.args


# ------------------------------------------------------------------------- trap 1: switching project
def test_switching_project_shows_nothing_of_the_old_one(qtbot, window, project_with_model, demo_line, tmp_path,
                                                         monkeypatch):
    _load(qtbot, window, project_with_model)
    _inspect_folder(qtbot, window, monkeypatch, demo_line / "test")
    _start_and_cancel_training(qtbot, window)
    window.camera_panel.show_verdict("NG", 0.93)  # the last camera frame's verdict
    panel = window.threshold_panel
    qtbot.waitUntil(lambda: panel._results.size > 0, timeout=3000)
    assert "good (reference) flagged NG" in panel.stats_label.text() and window.latency_label.text()
    assert window.training_panel.log.toPlainText() and window.camera_panel.verdict_label.text()
    panel.set_uncertain(0.37)  # this project's Review band

    other = projects.create_project(tmp_path / "other", "gaskets")
    projects.set_up_single_user(other, "tester")
    window.open_project(other.root)  # what Project → Open recent does

    assert window.windowTitle().startswith("gaskets") and window.results_panel.model().rowCount() == 0
    assert panel._results.size == 0 and panel._good.size == 0 and panel.stats_label.text() == ""
    assert panel.expected_rate_text() is None
    # No band here, and the old project's is not the one offered: turned on, it starts from the default.
    assert not panel.uncertain_toggle.isChecked() and panel.uncertain_spin.value() == pytest.approx(0.4)
    training = window.training_panel
    assert training.log.toPlainText() == "" and training.progress.format() == "" and training.eta_label.text() == ""
    assert window.camera_panel.verdict_label.text() == "" and window.latency_label.text() == ""
    assert "no model" in window.model_label.text() and not window.viewer.has_image()


def test_the_threshold_panel_names_a_good_image_that_scores_like_a_defect(qtbot, window, tmp_path,
                                                                          line_with_a_defect_among_good):
    from tests.conftest import train_model

    data, defective = line_with_a_defect_among_good
    project = projects.create_project(tmp_path / "project", "washers", data / "train" / "good", single_user="tester")
    shutil.copytree(train_model(data, tmp_path / "model"), project.models_dir / "trained")
    project.current_model = "trained"
    project.save()
    _load(qtbot, window, project)
    panel = window.threshold_panel
    qtbot.waitUntil(lambda: f"Look at good image {defective}" in panel.stats_label.text(), timeout=5000)
    # Show puts the named image in the viewer as it is: the model was fitted on it, so judged by the model it
    # would pass beside a note that says it scores like a defect unseen. It is neither inspected nor recorded,
    # and nothing in the results stays selected for G or B to label.
    window.inspect([data / "test"])
    results = window.results_panel.model()
    qtbot.waitUntil(lambda: results.rowCount() > 0 and not window.inspection._job.running, timeout=30000)
    listed = results.rowCount()
    with RecordsService(project.root) as records:
        recorded = records.count(InspectionQuery())
    assert panel.show_suspects_button.isVisible() and panel.show_suspects_button.text() == "Show it"
    qtbot.mouseClick(panel.show_suspects_button, Qt.MouseButton.LeftButton)
    name = Path(defective).name
    qtbot.waitUntil(lambda: window.viewer.title_label.text().startswith(name), timeout=10000)
    assert "not inspected" in window.viewer.title_label.text() and window.viewer.heat_item.image is None
    assert window.results_panel.current_row() is None and results.rowCount() == listed
    with RecordsService(project.root) as records:
        assert records.count(InspectionQuery()) == recorded
    other = projects.create_project(tmp_path / "other", "gaskets", single_user="tester")
    window.open_project(other.root)
    assert "Look at good image" not in panel.stats_label.text() and not panel.show_suspects_button.isVisible()


# ---------------------------------------------------------------- trap 6: quit, cancel, time left
def test_quit_during_training_asks_and_cancels_cleanly_on_yes(qtbot, window, project_with_model):
    _load(qtbot, window, project_with_model)
    before = sorted(p.name for p in project_with_model.models_dir.iterdir())
    with qtbot.waitSignal(window.trainer.progress, timeout=30000):
        window.train_action.trigger()
    window.quit_action.trigger()
    question = window.quit_question
    assert question.isVisible() and window.isVisible() and window.trainer.running
    question.button(QMessageBox.StandardButton.No).click()  # keep training
    assert window.isVisible() and window.trainer.running
    window.quit_action.trigger()
    window.quit_question.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: not window.trainer.running and not window.isVisible(), timeout=30000)
    assert sorted(p.name for p in project_with_model.models_dir.iterdir()) == before
    assert projects.open_project(project_with_model.root).current_model == "trained"


def test_cancel_shows_a_cancelled_bar_not_a_full_one(qtbot, window, project_with_model):
    _load(qtbot, window, project_with_model)
    message, outcome = _start_and_cancel_training(qtbot, window)
    bar = window.training_panel.progress
    assert outcome == "cancelled" and "cancelled" in bar.format()
    assert bar.value() < bar.maximum() and bar.property("outcome") == "cancelled"
    assert window.training_panel.train_button.isEnabled() and window.training_panel.eta_label.text() == ""


def test_a_cancelled_training_has_ended_when_the_window_hears_of_it(qtbot, window, project_with_model):
    # Its thread ends a moment after the outcome: a quit or a new training asked in between was refused for it.
    _load(qtbot, window, project_with_model)
    heard = []
    window.trainer.ended.connect(lambda *_: heard.append(window.trainer.running))
    _start_and_cancel_training(qtbot, window)
    assert heard == [False]
    window.close()  # at once, as a user may
    assert getattr(window, "quit_question", None) is None and not window.isVisible()


def test_time_left_starts_from_the_estimate_and_never_jumps(qtbot, window):
    from anomalyapp.core.types import Progress
    from anomalyapp.services.training import Estimate

    clock = [0.0]
    view = window.training_view
    view.clock = lambda: clock[0]
    view.set_estimate(Estimate(images=100, seconds=196.0, bank_size=None, memory_mb=10.0, per_image_ms=900.0))
    assert "3 min 16 s" in window.training_panel.estimate_label.text()
    view.start()
    shown = []
    for step in range(1, 101):  # a phase measured at 1 s per step: the phase alone would say 99 s at step 1
        clock[0] = float(step)
        view.show_progress(Progress("features", step, 100, f"features {step}/100"))
        shown.append((clock[0], window.training_panel.eta_label.text()))

    def seconds(text: str) -> float:
        words = text.split()
        if "min" in words:
            minutes = float(words[words.index("min") - 1])
            rest = float(words[words.index("min") + 1]) if words[words.index("min") + 1] != "left" else 0.0
            return minutes * 60 + rest
        return float(words[1])

    values = [seconds(text) for _, text in shown if text]
    assert values[0] == pytest.approx(195, abs=10)  # the pre-estimate, not the phase's 99 s
    assert all(abs(b - a) <= 12 for a, b in zip(values, values[1:]))  # no 25 s jumps
    assert values[-1] < 60  # and it has followed what the phase measured


# --------------------------------------------------------------------- trap 2: a folder tree
def test_inspect_folder_reads_subfolders_and_names_the_folder(qtbot, window, project_with_model, demo_line,
                                                              monkeypatch):
    from anomalyapp.services import reports
    from anomalyapp.services.records import InspectionQuery, RecordsService

    _load(qtbot, window, project_with_model)
    count = _inspect_folder(qtbot, window, monkeypatch, demo_line / "test")
    model = window.results_panel.model()
    classes = {p.name for p in (demo_line / "test").iterdir() if p.is_dir()}
    assert count > 8 and len(classes) > 1
    folders = {model.data(model.index(r, model.FOLDER)) for r in range(model.rowCount())}
    assert folders == classes
    assert model.headerData(model.FOLDER, Qt.Orientation.Horizontal) == "Folder"
    with RecordsService(project_with_model.root) as records:
        assert records.count(InspectionQuery()) == count
        report = reports.build_report(records, InspectionQuery())
    names = [thumb.file_name for thumb in report.thumbnails]  # the PDF's picture captions
    assert len(names) > 1 and len(set(names)) == len(names)  # good/000.png and scratch/000.png, not 000.png twice
    assert {name.split("/")[0] for name in names} <= classes


# --------------------------------------------------------------------- trap 3: new project
def test_new_project_dialog_refuses_a_folder_full_of_other_files(qtbot, window, demo_line, tmp_path):
    busy = tmp_path / "Documents"
    busy.mkdir()
    (busy / "thesis.docx").write_bytes(b"not a project")
    window.new_project_action.trigger()
    dialog = window.new_project_dialog
    assert dialog.isVisible()
    # New Folder -> Return in a folder chooser used to create the project in the parent: now the folder is
    # named, shown, and a folder with other files in it is refused.
    dialog.location.setText(str(tmp_path))
    dialog.name.setText("Documents")
    assert not dialog.create_button.isEnabled() and "is not empty" in dialog.message.text()
    dialog.create_button.click()
    assert not (busy / "project.json").exists() and dialog.isVisible()

    dialog.good_folder.setText(str(demo_line / "train" / "good"))
    good_count = len(list((demo_line / "train" / "good").iterdir()))
    assert f"{good_count} good images" in dialog.preview_text.text() and dialog.thumbnails.count() > 0
    dialog.location.setText(str(busy))
    dialog.name.setText("washers line 2")
    assert dialog.target.text() == str(busy / "washers line 2") and dialog.create_button.isEnabled()
    dialog.create_button.click()
    assert not dialog.isVisible()
    created = projects.open_project(busy / "washers line 2")
    assert created.name == "washers line 2" and created.good_folder == str(demo_line / "train" / "good")
    assert window.project.root == busy / "washers line 2" and (busy / "thesis.docx").exists()


# ------------------------------------------------------------------------- the choosers open where the data is
def test_the_folder_choosers_open_beside_the_good_images_then_where_the_user_last_chose(
        qtbot, window, project_with_model, demo_line, monkeypatch, tmp_path):
    _load(qtbot, window, project_with_model)
    opened_at = []

    def chooser(parent, title, folder="", *args, **kwargs):
        opened_at.append(folder)
        return ""  # the user cancels: nothing is remembered

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", chooser)
    window.evaluate_action.trigger()
    window.inspect_folder_action.trigger()
    # The project learns from demo_line/train/good: the data set's root holds test/ and ground_truth/.
    assert opened_at == [str(demo_line), str(demo_line)]

    _inspect_folder(qtbot, window, monkeypatch, demo_line / "test" / "good")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", chooser)
    window.inspect_folder_action.trigger()
    window.evaluate_action.trigger()
    assert opened_at[2:] == [str(demo_line / "test" / "good"), str(demo_line)]

    other = projects.create_project(tmp_path / "other", "gaskets", tmp_path / "gaskets" / "good")
    projects.set_up_single_user(other, "tester")
    window.open_project(other.root)
    window.inspect_folder_action.trigger()
    assert opened_at[4] == ""  # the other project's folder does not exist yet, and nothing was chosen in it


def test_a_good_image_named_as_a_defect_is_set_aside_and_the_model_trained_again_without_it(
        qtbot, window, tmp_path, line_with_a_defect_among_good):
    from tests.conftest import train_model

    source, defective = line_with_a_defect_among_good
    data = shutil.copytree(source, tmp_path / "line")  # the image is moved: the fixture's folder is shared
    project = projects.create_project(tmp_path / "project", "washers", data / "train" / "good", single_user="tester")
    shutil.copytree(train_model(data, tmp_path / "model"), project.models_dir / "trained")
    project.current_model = "trained"
    project.training.image_size = 128
    project.save()
    _load(qtbot, window, project)
    panel = window.threshold_panel
    qtbot.waitUntil(lambda: panel.set_aside_button.isVisible(), timeout=5000)

    qtbot.mouseClick(panel.set_aside_button, Qt.MouseButton.LeftButton)
    question = window.set_aside_question
    assert "set_aside" in question.text() and Path(defective).name in question.text()
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=120000):
        qtbot.mouseClick(question.button(QMessageBox.StandardButton.Yes), Qt.MouseButton.LeftButton)
        # Moved: the buttons go at once, while the new model trains (the model in use still names the image).
        assert not panel.set_aside_button.isVisible() and window.trainer.running

    set_aside = data / "set_aside" / Path(defective).name
    assert set_aside.is_file() and not (data / defective).exists()
    entry = window.access.records.audit_log(subject=str(data / defective))[0]
    assert entry.action == "good_image_set_aside" and str(set_aside) in entry.new_value
    # The new model learnt without it: its calibration names nothing, and the buttons are gone.
    assert window.project.current_model != "trained"
    qtbot.waitUntil(lambda: "Look at good image" not in panel.stats_label.text(), timeout=5000)
    assert not panel.set_aside_button.isVisible() and not panel.show_suspects_button.isVisible()


def test_the_training_log_holds_each_epoch_once(qtbot, window):
    from anomalyapp.core.types import Progress

    panel = window.training_panel
    panel.set_running(True)
    panel.log.clear()
    for stage in ("train", "fold 1/3"):
        for epoch in (1, 2):
            panel.show_progress(Progress(stage, epoch, 2, f"{stage} epoch {epoch}/2 loss 0.5", {"loss": 0.5}))
    panel.show_progress(Progress("calibrate", 1, 3, "fold 1/3 scored"))
    assert panel.log.toPlainText().splitlines() == [
        "train epoch 1/2 loss 0.5", "train epoch 2/2 loss 0.5",
        "fold 1/3 epoch 1/2 loss 0.5", "fold 1/3 epoch 2/2 loss 0.5", "fold 1/3 scored"]


def test_the_time_left_says_when_the_training_has_outlived_its_estimate(qtbot, window):
    from anomalyapp.core.types import Progress
    from anomalyapp.services.training import Estimate

    clock = [0.0]
    view = window.training_view
    view.clock = lambda: clock[0]
    view.set_estimate(Estimate(images=10, seconds=20.0, bank_size=None, memory_mb=10.0, per_image_ms=900.0))
    view.start()
    clock[0] = 10.0
    view.show_progress(Progress("train", 20, 40, "epoch 20/40 loss 0.5", {"loss": 0.5}))
    assert window.training_panel.eta_label.text().startswith("about ")
    clock[0] = 35.0  # past the estimate, and the folds still to come
    view.show_progress(Progress("fold 1/3", 1, 40, "epoch 1/40 loss 0.5", {"loss": 0.5}))
    clock[0] = 40.0
    view.show_progress(Progress("fold 1/3", 10, 40, "epoch 10/40 loss 0.5", {"loss": 0.5}))
    assert window.training_panel.eta_label.text().startswith("past the estimate; fold 1/3: about ")


def test_without_an_estimate_the_plan_the_training_sends_gives_the_whole_time_left(qtbot, window):
    """A retraining nobody estimated: the running stage's own figure, named as such, until the autoencoder
    sends the plan its first epochs timed; then the time left counts the folds and the calibration to come."""
    from anomalyapp.core.types import Progress

    clock = [0.0]
    view = window.training_view
    view.clock = lambda: clock[0]
    view.forget_estimate()
    view.start()
    for step in range(1, 11):
        clock[0] = float(step)
        view.show_progress(Progress("features", step, 10, f"features {step}/10"))
        if step == 5:
            assert window.training_panel.eta_label.text().startswith("features: about ")
    plan = (("features", 10.0), ("train", 20.0), ("fold 1/3", 13.0), ("fold 2/3", 13.0), ("fold 3/3", 13.0),
            ("calibrate", 12.0))
    for epoch in range(1, 41):
        clock[0] = 10.0 + 0.5 * epoch
        view.show_progress(Progress("train", epoch, 40, f"epoch {epoch}/40 loss 0.5", {"loss": 0.5},
                                    plan=plan if epoch == 3 else ()))
    text = window.training_panel.eta_label.text()
    assert text.startswith("about ") and 40 <= float(text.split()[1]) <= 65  # 51 s of folds and calibration


def test_an_estimate_split_by_stage_keeps_counting_the_stages_to_come_past_its_total(qtbot, window):
    from anomalyapp.core.types import Progress
    from anomalyapp.services.training import Estimate

    clock = [0.0]
    view = window.training_view
    view.clock = lambda: clock[0]
    stages = (("features", 4.0), ("train", 8.0), ("fold 1/3", 5.0), ("fold 2/3", 5.0), ("fold 3/3", 5.0),
              ("calibrate", 3.0))
    view.set_estimate(Estimate(images=10, seconds=30.0, bank_size=None, memory_mb=10.0, per_image_ms=400.0,
                               stages=stages))
    view.start()
    for step in range(1, 11):  # features at 3x the estimated pace: 12 s
        clock[0] = 1.2 * step
        view.show_progress(Progress("features", step, 10, f"features {step}/10"))
    for epoch in range(1, 41):  # training at 3x too: 24 s, so the whole estimate (30 s) is spent
        clock[0] = 12.0 + 0.6 * epoch
        view.show_progress(Progress("train", epoch, 40, f"epoch {epoch}/40 loss 0.5", {"loss": 0.5}))
    text = window.training_panel.eta_label.text()
    # The folds and calibration still to come, at the pace kept: 3 x 18 s = 54 s; not "past the estimate".
    assert text.startswith("about ") and 40 <= float(text.split()[1]) <= 70


def test_an_estimate_made_for_other_settings_is_not_used_for_the_time_left(qtbot, window, project_with_model):
    _load(qtbot, window, project_with_model)
    panel, view = window.training_panel, window.training_view

    def estimate_now():
        with qtbot.waitSignal(window.trainer.estimate_ready, timeout=60000):
            panel.estimate_button.click()
        assert view.estimate_seconds and "images" in panel.estimate_label.text()

    estimate_now()
    _start_and_cancel_training(qtbot, window)  # the same settings: the estimate stands
    assert view.estimate_seconds and "images" in panel.estimate_label.text()
    estimate_now()
    described = panel.estimate_label.text()
    ratio = panel.coreset_ratio.value()
    panel.coreset_ratio.setValue(ratio / 2)  # a bank half the size: another training
    qtbot.waitUntil(lambda: "was for other settings" in panel.estimate_label.text(), timeout=2000)
    panel.coreset_ratio.setValue(ratio)  # back as it was: the estimate stands again
    qtbot.waitUntil(lambda: panel.estimate_label.text() == described, timeout=2000)
    panel.false_reject_rate.setValue(5.0)  # moves the threshold, not the work
    qtbot.wait(50)
    assert panel.estimate_label.text() == described
    panel.coreset_ratio.setValue(ratio / 2)
    _start_and_cancel_training(qtbot, window)
    assert view.estimate_seconds is None and view.estimate_stages == () and panel.estimate_label.text() == ""
    # Settings changed while the estimate measures: it arrives saying it is for other settings.
    with qtbot.waitSignal(window.trainer.estimate_ready, timeout=60000):
        panel.estimate_button.click()
        panel.coreset_ratio.setValue(ratio)
    qtbot.waitUntil(lambda: "was for other settings" in panel.estimate_label.text(), timeout=2000)


def test_an_estimate_for_other_settings_is_made_again_once_they_rest(qtbot, window, project_with_model):
    _load(qtbot, window, project_with_model)
    panel = window.training_panel
    with qtbot.waitSignal(window.trainer.estimate_ready, timeout=60000):
        panel.estimate_button.click()
    first = panel.estimate_label.text()
    ratio = panel.coreset_ratio.value()
    with qtbot.waitSignal(window.trainer.estimate_ready, timeout=60000):  # nobody clicks
        for step in (0.8, 0.6, 0.5):  # a spin box stepped down: measured once it rests
            panel.coreset_ratio.setValue(ratio * step)
            qtbot.wait(100)
        assert "was for other settings" in panel.estimate_label.text() or window.trainer.estimating
    # (one estimate on any machine that takes the three steps within the 1.5 s; a slower one measures again)
    qtbot.waitUntil(lambda: not window.trainer.estimating
                    and panel.estimate_label.text() == window.training_view.estimate.describe(), timeout=60000)
    measured = window.training_view.estimate
    assert measured.bank_size < int(first.split("memory bank ")[1].split()[0].replace(",", ""))
    qtbot.wait(2000)
    assert not window.trainer.estimating  # current now: nothing more is measured


def test_a_trained_projects_changed_settings_are_estimated_without_a_click(qtbot, window, project_with_model):
    """Nothing is measured for the settings the model was trained with; a change away from them is measured once
    the settings rest, as it would be with an estimate shown, so the cost of retraining is seen before it starts."""
    _load(qtbot, window, project_with_model)
    panel = window.training_panel
    qtbot.wait(2000)  # longer than the re-estimate's delay
    assert window.training_view.estimate is None and not window.trainer.estimating
    ratio = panel.coreset_ratio.value()
    with qtbot.waitSignal(window.trainer.estimate_ready, timeout=60000):  # nobody clicks
        panel.coreset_ratio.setValue(ratio / 2)
    assert "memory bank" in panel.estimate_label.text()
    # Back to the model's own settings: the estimate shown is now for other ones, and says so; nothing is measured.
    panel.coreset_ratio.setValue(ratio)
    qtbot.waitUntil(lambda: "was for other settings" in panel.estimate_label.text(), timeout=2000)
    qtbot.wait(2000)
    assert not window.trainer.estimating


def test_an_estimate_that_cannot_measure_says_why_in_its_place_not_in_a_dialog(qtbot, window, project_with_model,
                                                                              tmp_path, demo_line):
    """Pointed at a folder without images, the estimate (started unasked: the settings changed) says why where the
    estimate goes; no dialog interrupts the person typing the folder."""
    _load(qtbot, window, project_with_model)
    dialogs = []
    window.training.error.connect(lambda title, message: dialogs.append(message))
    empty = tmp_path / "empty"
    empty.mkdir()
    panel = window.training_panel
    panel.good_folder.setText(str(empty))
    panel.good_folder.editingFinished.emit()  # what leaving the field does
    qtbot.waitUntil(lambda: panel.estimate_label.text().startswith("no estimate: "), timeout=30000)
    assert "empty" in panel.estimate_label.text() and dialogs == []
    assert window.training_view.estimate is None
    # The folder put right: measured again without a click, and the reason goes.
    with qtbot.waitSignal(window.trainer.estimate_ready, timeout=60000):
        panel.good_folder.setText(str(demo_line / "train" / "good"))
        panel.good_folder.editingFinished.emit()
    assert "memory bank" in panel.estimate_label.text() and dialogs == []


def test_a_training_started_stops_the_estimate_under_way(qtbot, window, project_with_model):
    """The estimate would share the two cores with the training; it is stopped, and its "measuring" line goes."""
    _load(qtbot, window, project_with_model)
    panel = window.training_panel
    with qtbot.waitSignal(window.trainer.estimate_cancelled, timeout=30000):
        panel.estimate_button.click()
        assert "measuring" in panel.estimate_label.text()
        with qtbot.waitSignal(window.trainer.progress, timeout=30000):
            window.train_action.trigger()
    assert window.training_view.estimate is None and "measuring" not in panel.estimate_label.text()
    assert window.trainer.running  # the training goes on
    with qtbot.waitSignal(window.trainer.ended, timeout=30000):
        window.cancel_action.trigger()


def test_the_training_settings_are_the_projects_once_changed_not_once_trained(qtbot, window, project_with_model):
    _load(qtbot, window, project_with_model)
    def training_written():
        return json.loads((project_with_model.root / "project.json").read_text())["training"]

    written = training_written()
    qtbot.wait(700)
    assert training_written() == written  # the panel, filled from the project, changed nothing
    panel = window.training_panel
    panel.detector.setCurrentIndex(panel.detector.findData("autoencoder"))
    panel.set_region([(0.1, 0.2, 0.5, 0.6)])  # what the region editor's OK does
    panel.false_reject_rate.setValue(0.7)
    qtbot.waitUntil(lambda: projects.open_project(project_with_model.root).training.detector == "autoencoder",
                    timeout=3000)
    kept = projects.open_project(project_with_model.root).training
    assert [list(r) for r in kept.roi] == [[0.1, 0.2, 0.5, 0.6]] and kept.false_reject_rate == pytest.approx(0.007)
    window.open_project(project_with_model.root)  # opened again, as after a restart
    assert panel.settings_values()["detector"] == "autoencoder" and panel.region == ((0.1, 0.2, 0.5, 0.6),)
    panel.detector.setCurrentIndex(panel.detector.findData("patchcore"))
    window.open_project(project_with_model.root)  # at once: the change is kept all the same
    assert projects.open_project(project_with_model.root).training.detector == "patchcore"
    assert panel.settings_values()["detector"] == "patchcore"


def test_loading_a_model_records_its_band_once_and_nobody_changes_it(qtbot, window, project_with_model):
    # The calibrated band (0.4601641...) was kept to every place while the panel holds 3: the panel "moved" it to
    # 0.460 as soon as the model was shown, audited as the person's change from the threshold panel.
    from anomalyapp.services.records import RecordsService

    _load(qtbot, window, project_with_model)
    qtbot.wait(600)  # longer than the panel takes to commit a moved rule
    with RecordsService(project_with_model.root) as records:
        entries = [entry for entry in records.audit_log() if entry.action == "threshold_changed"]
        rule = records.decision_rule()
    assert len(entries) == 1 and "calibrated band" in entries[0].new_value, [e.new_value for e in entries]
    assert rule == (window.threshold_panel.threshold(), window.threshold_panel.uncertain_low())


def test_reset_to_calibrated_goes_back_to_the_models_review_band(qtbot, window, project_with_model):
    # Reset once dropped the band: after a look at other thresholds, borderline parts no longer went to Review.
    from PySide6.QtCore import Qt

    from anomalyapp.services.records import RecordsService

    def recorded():
        with RecordsService(project_with_model.root) as records:
            return records.decision_rule()

    _load(qtbot, window, project_with_model)
    panel = window.threshold_panel
    calibrated = panel.uncertain_low()
    assert calibrated is not None and calibrated < 0.5  # the model's band, recorded when it was loaded
    panel.set_rule(0.7, None)
    qtbot.waitUntil(lambda: recorded() == (0.7, None), timeout=3000)
    qtbot.mouseClick(panel.reset_threshold_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: recorded() == (0.5, pytest.approx(calibrated)), timeout=3000)
    assert panel.uncertain_toggle.isChecked()


def test_without_an_estimate_the_time_left_names_the_stage_it_measures(qtbot, window):
    from anomalyapp.core.types import Progress

    clock = [0.0]
    view = window.training_view
    view.clock = lambda: clock[0]
    view.estimate = None
    view.start()
    for step in (1, 38):
        clock[0] = float(step)
        view.show_progress(Progress("train", step, 40, f"epoch {step}/40 loss 0.5", {"loss": 0.5}))
    assert window.training_panel.eta_label.text().startswith("train: about ")


def test_an_image_shaped_unlike_the_training_images_is_listed_not_inspected_with_the_reason(
        qtbot, window, project_with_model, demo_line, tmp_path, monkeypatch):
    """A thumbnail dropped among the parts was upscaled and judged NG; now it is listed as not inspected, its row
    and the status saying why, and nothing of it is recorded."""
    import cv2

    parts = tmp_path / "parts"
    parts.mkdir()
    goods = sorted((demo_line / "test" / "good").iterdir())[:2]
    for source in goods:
        shutil.copy(source, parts / source.name)
    cv2.imwrite(str(parts / "thumbnail.png"), cv2.resize(cv2.imread(str(goods[0])), (8, 8)))
    _load(qtbot, window, project_with_model)
    _inspect_folder(qtbot, window, monkeypatch, parts)
    model = window.results_panel.model()
    qtbot.waitUntil(lambda: "1 not inspected" in window.status_line.message(), timeout=10000)
    row = next(i for i in range(model.rowCount()) if model.row_at(i).path.name == "thumbnail.png")
    assert model.verdict_at(row) == "Error" and "8 x 8 px is far smaller" in model.row_at(row).error
    assert model.row_at(row).thumbnail is not None  # it was read: listed with its picture
    window.results_panel.select_source_row(row)
    assert window.status_line.message().startswith("thumbnail.png: 8 x 8 px is far smaller than the images the "
                                                   "model learned (the smallest: 128 x 128 px)")
    # shown as it is, without a map, so that the person sees what came in instead of a part
    qtbot.waitUntil(lambda: window.viewer.title_label.text() == "thumbnail.png: not inspected", timeout=10000)
    assert window.viewer.has_image() and window.viewer.heat_item.image is None
    with RecordsService(project_with_model.root) as records:
        assert "thumbnail.png" not in {Path(r.image_path).name for r in records.query(InspectionQuery())}
