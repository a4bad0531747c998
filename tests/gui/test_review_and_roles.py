"""Review, records, roles and reports in the real window."""

from __future__ import annotations

import re
import shutil

import pytest

from anomalyapp.core.image_names import shown_name
from anomalyapp.services import project as projects
from anomalyapp.services.records import InspectionQuery, RecordsService

pytestmark = pytest.mark.gui

SUPERVISOR = ("Sam", "Supervisor1")
OPERATOR = ("Olga", "Operator1")


@pytest.fixture
def project(tmp_path, demo_line, patchcore_model):
    project = projects.create_project(tmp_path / "project", "washers", demo_line / "train" / "good")
    shutil.copytree(patchcore_model, project.models_dir / "trained")
    project.current_model = "trained"
    project.save()
    with RecordsService(project.root) as records:
        sam = records.auth.create_first_supervisor(*SUPERVISOR)
        records.auth.add_user(sam, *OPERATOR, role="operator")
        records.add_version("trained", None, "trained", sam)
    return project


def _open_and_log_in(qtbot, window, project, who):
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=30000):
        window.set_project(project)
    qtbot.waitUntil(lambda: getattr(window, "login_dialog", None) is not None and window.login_dialog.isVisible(),
                    timeout=5000)
    assert not window.centralWidget().isEnabled()
    # the model loaded behind the login: the status says the station is locked, not what to inspect
    assert window.status_line.message() == "station locked: log in to continue"
    dialog = window.login_dialog
    dialog.name.setText(who[0])
    dialog.password.setText("wrong")
    dialog._try()
    assert "wrong user name or password" in dialog.message.text() and dialog.isVisible()
    dialog.password.setText(who[1])
    dialog._try()
    assert not dialog.isVisible() and window.access.user.name == who[0]


def _inspect(qtbot, window, demo_line):
    folders = [str(p) for p in sorted((demo_line / "test").iterdir())]
    expected = sum(len(list(p.iterdir())) for p in (demo_line / "test").iterdir())
    window.inspect(folders)
    qtbot.waitUntil(lambda: window.results_panel.model().rowCount() == expected, timeout=60000)
    qtbot.waitUntil(lambda: not window.inspection._job.running, timeout=10000)
    return expected


def test_operator_inspects_and_labels_but_cannot_change_threshold_model_or_users(qtbot, window, project, demo_line):
    _open_and_log_in(qtbot, window, project, OPERATOR)
    assert not window.train_action.isEnabled() and not window.users_action.isEnabled()
    assert not window.new_project_action.isEnabled() and window.open_project_action.isEnabled()
    # the training settings are shown, greyed out: a changed field would not be kept, so none can be changed
    settings = window.training_panel.settings_box
    assert settings.isVisible() and not settings.isEnabled() and not window.training_panel.epochs.isEnabled()
    assert not window.threshold_panel.is_editable()
    window.start_training()
    assert "may not train" in window.last_error
    count = _inspect(qtbot, window, demo_line)
    with RecordsService(project.root) as records:
        assert records.count(InspectionQuery()) == count
    # review queue: NG parts only, one key per decision, the next opens
    window.results_panel.verdict_filter.setCurrentText("Review queue")
    queue = window.results_panel.proxy().rowCount()
    assert queue > 0
    window.results_panel.select_next()
    window.note_edit.setText("scratch visible at 3 o'clock")
    window.label_current("NG")
    assert window.results_panel.proxy().rowCount() == queue - 1
    assert window.results_panel.current_row() is not None
    with RecordsService(project.root) as records:
        labelled = records.query(InspectionQuery(label="NG"))
        assert len(labelled) == 1
        history = records.label_history(labelled[0].id)
        assert history[0].note == "scratch visible at 3 o'clock"
    # an operator's OK on an NG part is recorded as a false positive but does not change the model
    window.label_current("OK")
    assert "recorded as a false positive" in window.status_line.message()
    assert projects.open_project(project.root).current_model == "trained"
    with RecordsService(project.root) as records:
        assert len(records.query(InspectionQuery(label="OK"))) == 1
        assert [v.change for v in records.versions()] == ["trained"]
    window.show_records()
    dialog = window.records_dialog
    assert not dialog.rollback_button.isEnabled() and not dialog.apply_button.isEnabled()
    # the audit log names the part each label was given to, not only its record number
    subjects = {dialog.audit_table.item(r, 3).text() for r in range(dialog.audit_table.rowCount())
                if dialog.audit_table.item(r, 2).text() == "label_added"}
    assert f"inspection {labelled[0].id}: {shown_name(labelled[0].image_path)}" in subjects and len(subjects) == 2
    # an operator exports the whole log: reading who did what is not a supervisor's privilege
    out = project.root.parent / "audit.csv"
    with qtbot.waitSignal(dialog.exported, timeout=30000):
        dialog.export_audit(str(out))
    assert dialog.audit_message.text().endswith(f"audit entries written to {out}")
    exported = out.read_text(encoding="utf-8-sig")
    assert exported.startswith("id,at,user,action,subject,about,old_value,new_value")
    assert exported.count("label_added") == 2 and shown_name(labelled[0].image_path) in exported
    assert all(re.fullmatch(r"inspection \d+: \w+/\d+\.png", subject) for subject in subjects)


def test_false_positive_fix_is_recorded_as_a_version_and_can_be_rolled_back(qtbot, window, project, demo_line, tmp_path):
    _open_and_log_in(qtbot, window, project, SUPERVISOR)
    assert window.training_panel.settings_box.isEnabled() and window.new_project_action.isEnabled()
    _inspect(qtbot, window, demo_line)
    window.threshold_panel.set_threshold(0.55)  # the supervisor's rule for version 1
    window.threshold_panel.set_uncertain(band := 0.45)
    model = window.results_panel.model()
    flagged = next(i for i in range(model.rowCount()) if model.verdict_at(i) == "NG")
    window.results_panel.select_source_row(flagged)
    window.viewer.set_paint_mode(True)
    window.viewer.paint_layer.stroke([(10, 10), (20, 20)])
    with qtbot.waitSignal(window.inspection.correction_done, timeout=60000):
        window.label_current("OK")
    assert model.verdict_at(flagged) == "OK"
    with RecordsService(project.root) as records:
        versions = records.versions()
        assert [v.change.split(":")[0] for v in versions] == ["trained", "marked good"]
        assert records.current_version().folder == projects.open_project(project.root).current_model
        label = records.label_history(model.row_at(flagged).record_id)[0]
        assert label.label == "OK" and label.region_png.startswith(b"\x89PNG")
    window.threshold_panel.set_threshold(0.6)  # and another for version 2
    window.show_records()
    dialog = window.records_dialog
    rule_column = [dialog.versions_table.horizontalHeaderItem(c).text() for c in range(6)].index("Rule")
    assert [dialog.versions_table.item(r, rule_column).text() for r in range(2)] == [
        f"0.550 (review from {band:.3f})", f"0.600 (review from {band:.3f})"]
    dialog.versions_table.selectRow(0)
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=30000):
        dialog.rollback_selected()
    assert projects.open_project(project.root).current_model == "trained"
    # version 1 is judged again with the rule it was last judged with
    assert (window.threshold_panel.threshold(), window.threshold_panel.uncertain_low()) == (0.55, band)
    assert projects.open_project(project.root).threshold == pytest.approx(0.55)
    # once loaded, the status still says what was done, not only that a model loaded
    assert window.status_line.message().startswith("rolled back to version 1 (trained")
    assert "model loaded" in window.status_line.message()
    with qtbot.waitSignal(dialog.exported, timeout=60000):  # exports run in background jobs
        dialog.export_csv(str(tmp_path / "inspections.csv"))
    with qtbot.waitSignal(dialog.exported, timeout=120000):
        dialog.export_pdf(str(tmp_path / "report.pdf"))
    assert (tmp_path / "inspections.csv").read_text().count("\n") > 10
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    actions = [entry.action for entry in dialog.records.audit_log()]
    assert any("rollback" in action for action in actions)


def test_a_part_taught_good_that_leaves_the_list_leaves_the_viewer_too(qtbot, window, project, demo_line, tmp_path):
    _open_and_log_in(qtbot, window, project, SUPERVISOR)
    parts = tmp_path / "parts"  # the test images under names of their own, so that a name picks one out
    parts.mkdir()
    for image in (demo_line / "test").glob("*/*.png"):
        shutil.copy(image, parts / f"{image.parent.name}_{image.name}")
    window.inspect([str(parts)])
    model, panel = window.results_panel.model(), window.results_panel
    qtbot.waitUntil(lambda: model.rowCount() == len(list(parts.iterdir())), timeout=60000)
    qtbot.waitUntil(lambda: not window.inspection._job.running, timeout=10000)
    flagged = next(i for i in range(model.rowCount()) if model.verdict_at(i) == "NG")
    panel.verdict_filter.setCurrentText("NG")
    panel.name_filter.setText(model.row_at(flagged).path.name)  # the one part a technician looks at
    panel.select_source_row(flagged)
    qtbot.waitUntil(window.viewer.has_image, timeout=10000)
    with qtbot.waitSignal(window.inspection.correction_done, timeout=60000):
        window.label_current("OK")
    assert model.verdict_at(flagged) == "OK" and panel.proxy().rowCount() == 0
    assert not window.viewer.has_image()  # not the map the model drew before it learnt the part


def test_threshold_from_labels_is_applied_by_a_supervisor(qtbot, window, project, demo_line):
    _open_and_log_in(qtbot, window, project, SUPERVISOR)
    _inspect(qtbot, window, demo_line)
    model = window.results_panel.model()
    records = window.access.records
    for i in range(model.rowCount()):
        row = model.row_at(i)
        records.label(row.record_id, "NG" if "/good/" not in str(row.path) else "OK", user=window.access.user)
    window.threshold_panel.set_threshold(0.3)  # below the good parts: the labels propose another
    qtbot.waitUntil(lambda: records.decision_rule()[0] == pytest.approx(0.3), timeout=3000)
    window.show_records()
    dialog = window.records_dialog
    assert dialog.apply_button.isEnabled()
    proposed = dialog._proposal.proposed_threshold
    dialog.apply_proposal()
    assert window.threshold_panel.threshold() == pytest.approx(proposed, abs=1e-3)
    assert records.current_version().change.startswith("threshold")
    # The labels propose what is now in use: nothing more to apply.
    assert dialog._proposal.proposed_threshold == pytest.approx(proposed, abs=1e-3)
    assert not dialog.apply_button.isEnabled() and "in use" in dialog.apply_button.toolTip()


def test_single_user_station_is_not_locked_out(qtbot, window, tmp_path, demo_line):
    project = projects.create_project(tmp_path / "solo", "solo", demo_line / "train" / "good")
    projects.set_up_single_user(project, "solo")
    window.set_project(project)
    assert window.access.user is not None
    window.lock_action.trigger()
    assert window.access.user is not None and "single-user station" in window.last_error


def test_lock_screen_requires_login_again(qtbot, window, project):
    _open_and_log_in(qtbot, window, project, SUPERVISOR)
    window.lock_action.trigger()
    assert window.access.user is None and not window.centralWidget().isEnabled()
    dialog = window.login_dialog
    dialog.name.setText(OPERATOR[0])
    dialog.password.setText(OPERATOR[1])
    dialog._try()
    assert window.access.user.name == OPERATOR[0] and window.centralWidget().isEnabled()


def test_single_user_goes_off_only_with_the_supervisors_password_so_the_lock_never_locks_everyone_out(
        qtbot, window, tmp_path, demo_line):
    project = projects.create_project(tmp_path / "solo", "solo", demo_line / "train" / "good", single_user="root")
    window.set_project(project)
    assert window.access.user.name == "root"
    assert "locked" not in window.status_line.message()  # logged in on opening: never said to be locked
    window.show_users()
    users = window.users_dialog
    users.new_name.setText(OPERATOR[0])
    users.new_password.setText(OPERATOR[1])
    users.new_password_again.setText(OPERATOR[1] + "x")  # a typo: nobody is added
    users._add()
    assert "the two passwords typed for Olga differ: nobody was added" in users.message.text()
    assert [u.name for u in window.access.records.auth.users()] == ["root"]
    users.new_password_again.setText(OPERATOR[1])
    users._add()
    assert users.message.text() == "" and OPERATOR[0] in [u.name for u in window.access.records.auth.users()]
    typed = []
    users.ask_password = lambda title, label: typed.pop(0) if typed else None
    users.single_user.setChecked(False)  # the password prompt cancelled: single-user stays on
    assert users.single_user.isChecked() and window.access.records.auth.single_user_mode()
    assert "type the password of root" in users.message.text()
    users.table.clearSelection()
    typed[:] = ["Rootpass1", "Rootpass2"]  # mistyped the second time: nothing changes
    users._set_password()
    assert "the two passwords typed for root differ" in users.message.text()
    typed[:] = ["Rootpass2"]
    users.single_user.setChecked(False)  # the password root has is still the random one
    assert users.single_user.isChecked()
    typed[:] = ["Rootpass1", "Rootpass1"]
    users._set_password()  # nobody selected: your own (the random one was never shown)
    typed[:] = ["Rootpass1"]
    users.single_user.setChecked(False)
    assert not users.single_user.isChecked() and not window.access.records.auth.single_user_mode()
    users.close()
    window.status.show("scratch/004.png: NG")
    window.lock_action.trigger()
    assert window.access.user is None
    assert window.status_line.message() == "station locked: log in to continue"
    dialog = window.login_dialog
    dialog.name.setText("root")
    dialog.password.setText("Rootpass1")
    dialog._try()
    assert window.access.user.name == "root" and window.access.user.is_supervisor
    assert window.status_line.message() == ""  # no longer locked


def test_an_operator_may_not_create_a_project(qtbot, window, project, tmp_path):
    _open_and_log_in(qtbot, window, project, OPERATOR)
    assert not window.new_project_action.isEnabled()
    window.new_project()  # past the window's own gate, the service refuses
    dialog = window.new_project_dialog
    dialog.location.setText(str(tmp_path))
    dialog.name.setText("mine")
    dialog.create_button.click()
    assert "operator Olga may not create projects" in window.last_error
    assert not (tmp_path / "mine" / "project.json").exists() and window.project.root == project.root



def test_an_operator_changes_their_own_password_from_the_menu(qtbot, window, project):
    _open_and_log_in(qtbot, window, project, OPERATOR)
    assert window.change_password_action.isEnabled() and not window.users_action.isEnabled()
    window.change_password_action.trigger()
    dialog = window.change_password_dialog
    assert dialog.isVisible()
    dialog.current.setText("not-it")
    dialog.new.setText("Newpass12")
    dialog.repeat.setText("Newpass12")
    dialog._try()
    assert "the current password is wrong" in dialog.message.text() and dialog.isVisible()
    dialog.current.setText(OPERATOR[1])
    dialog.repeat.setText("Newpass13")
    dialog._try()
    assert "differ" in dialog.message.text() and dialog.isVisible()
    dialog.repeat.setText("Newpass12")
    dialog._try()
    assert not dialog.isVisible()
    window.lock_action.trigger()
    login = window.login_dialog
    login.name.setText(OPERATOR[0])
    login.password.setText(OPERATOR[1])
    login._try()
    assert window.access.user is None
    login.password.setText("Newpass12")
    login._try()
    assert window.access.user.name == OPERATOR[0]
    olga = window.access.user.id
    assert any(entry.action == "password_changed" and entry.user_id == olga for entry in window.access.records.audit_log())
