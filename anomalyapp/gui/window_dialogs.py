"""The window's dialogs: errors, new/open project, the folder and file choosers, login, first supervisor,
users, records, evaluation, preferences, shortcuts, about, the question before quitting during a training. Each opens non-modally and is kept on the window (tests and
the screenshots reach them there)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QHBoxLayout, QMessageBox, QPushButton, QVBoxLayout

from anomalyapp import __version__

_IMAGES = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.PNG *.JPG *.JPEG *.BMP *.TIF *.TIFF)"


def show_error(window, title: str, message: str) -> None:
    window.status_line.show_message(f"{title}: {message}", 15000)
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, window)
    box.setObjectName("error_dialog")
    box.open()
    window.last_error = message


def new_project(window) -> None:
    from anomalyapp.gui.widgets.new_project_dialog import NewProjectDialog

    window.new_project_dialog = NewProjectDialog(window.session.create, window)
    window.new_project_dialog.open()


def _start_folder(window, purpose: str) -> str:
    """Where a chooser opens: the folder last chosen for this purpose in this project (this run of the window),
    else the folder beside the project's good images (an MVTec data set's root, where test/ is), or for a
    project the folder that holds the open one; else the working folder."""
    from anomalyapp.services.project import data_root_of

    last = window.last_folders.get(_folder_key(window, purpose))
    if last and Path(last).is_dir():
        return last
    if purpose == "project":
        return str(window.project.root.parent) if window.project is not None else ""
    good = window.project.good_folder if window.project is not None else None
    if good and data_root_of(good).is_dir():
        return str(data_root_of(good))
    return ""


def _chosen(window, purpose: str, path: str) -> None:
    """Remember the folder of what was chosen, so that the next chooser for this purpose opens there."""
    if path:
        folder = Path(path)
        window.last_folders[_folder_key(window, purpose)] = str(folder if folder.is_dir() else folder.parent)


def _folder_key(window, purpose: str) -> tuple[str, str | None]:
    # Opening a project is not about any one project; the data folders are.
    project = window.project if purpose != "project" else None
    return purpose, str(project.root) if project is not None else None


def open_project_dialog(window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Open project", _start_folder(window, "project"))
    _chosen(window, "project", folder)
    if folder:
        window.open_project(folder)


def fill_recent(window) -> None:
    from anomalyapp.services import project as projects

    window.recent_menu.clear()
    for path in projects.recent_projects():
        window.recent_menu.addAction(str(path), lambda p=path: window.open_project(p))
    if window.recent_menu.isEmpty():
        window.recent_menu.addAction("(none)").setEnabled(False)


def inspect_folder_dialog(window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Inspect folder (and its subfolders)",
                                              _start_folder(window, "inspect"))
    _chosen(window, "inspect", folder)
    if folder:
        window.inspect([folder])


def inspect_files_dialog(window) -> None:
    files, _ = QFileDialog.getOpenFileNames(window, "Inspect images", _start_folder(window, "inspect"), _IMAGES)
    _chosen(window, "inspect", files[0] if files else "")
    if files:
        window.inspect(files)


def evaluate_dialog(window) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Folder with test/ and ground_truth/ (MVTec layout)",
                                              _start_folder(window, "evaluate"))
    _chosen(window, "evaluate", folder)
    if folder:
        window.inspection_flow.evaluate(folder)


def ask_login(window) -> None:
    from anomalyapp.gui.widgets.account_dialogs import LoginDialog

    name = window.project.name if window.project else "anomalyapp"
    window.login_dialog = LoginDialog(window.access.login, name, locked=True, parent=window)
    window.login_dialog.open()


def ask_first_user(window) -> None:
    from anomalyapp.gui.widgets.account_dialogs import FirstSupervisorDialog

    window.first_user_dialog = FirstSupervisorDialog(window.access.create_first_supervisor, window)
    window.first_user_dialog.open()


def show_users(window) -> None:
    from anomalyapp.gui.widgets.account_dialogs import UsersDialog

    if window.access.require("manage_users"):
        window.users_dialog = UsersDialog(window.access.records.auth, window.access.user, window)
        window.users_dialog.finished.connect(lambda _: window.user_changed(window.access.user))
        window.users_dialog.open()


def change_password(window) -> None:
    from anomalyapp.gui.widgets.account_dialogs import ChangePasswordDialog

    if window.access.records is None or window.access.user is None:
        return
    window.change_password_dialog = ChangePasswordDialog(window.access.change_own_password, window.access.user.name,
                                                         window)
    window.change_password_dialog.open()


def show_records(window) -> None:
    from anomalyapp.gui.widgets.records_dialog import RecordsDialog

    if window.access.records is None or window.access.user is None:
        return
    window.review.flush()  # the rule in use and the versions' rules as the panel shows them
    window.records_dialog = RecordsDialog(window.access.records, window.access, window, **_label_scoring(window))
    window.records_dialog.threshold_applied.connect(window.review.threshold_applied)
    window.records_dialog.version_restored.connect(window.review.version_restored)
    window.records_dialog.show()


def _label_scoring(window) -> dict:
    """Every labelled part scored again by the model in use (under the inspection's lock), and the model's
    stated false-reject rate: what the Records window's threshold proposal needs."""
    from anomalyapp.core.config import CalibrationConfig
    from anomalyapp.services.label_scores import rescore_labelled

    inspection, records = window.inspection, window.access.records
    session = inspection.session
    if session is None:
        return {}

    def scorer(cancel):
        with inspection.session_lock:
            return (yield from rescore_labelled(records, session, cancel))

    target = session.calibration.target_false_reject_rate or CalibrationConfig().target_false_reject_rate
    return {"label_scorer": scorer, "target_false_reject_rate": target}


def show_evaluation(window, result: dict) -> None:
    from anomalyapp.gui.widgets.evaluation_plots import EvaluationPlots

    dialog = QDialog(window)
    dialog.setObjectName("evaluation_dialog")
    dialog.setWindowTitle(f"Evaluation — {Path(result['data']).name}")
    plots = EvaluationPlots()
    plots.show_evaluation(result)
    # The images behind a clicked cell or ROC point go through the window's own inspection: scored and listed,
    # and the first of them opened in the viewer.
    plots.images_requested.connect(lambda paths: window.inspection_flow.inspect(paths, open_first=True))
    layout = QVBoxLayout(dialog)
    layout.addWidget(plots)
    buttons = QHBoxLayout()
    save_png = QPushButton("Save plots (PNG)…")
    save_png.setObjectName("save_evaluation_png")
    save_png.clicked.connect(lambda: export_evaluation_png(window, plots, _ask_path(dialog, "Save plots", ".png",
                                                                                    _project_root(window))))
    save_csv = QPushButton("Save per-image scores (CSV)…")
    save_csv.setObjectName("save_evaluation_csv")
    save_csv.clicked.connect(lambda: export_evaluation_csv(window, result, _ask_path(dialog, "Save scores", ".csv",
                                                                                      _project_root(window))))
    buttons.addStretch(1)
    buttons.addWidget(save_png)
    buttons.addWidget(save_csv)
    layout.addLayout(buttons)
    dialog.resize(1100, 650)
    window.evaluation_dialog = dialog
    window.evaluation_plots = plots
    dialog.show()


def _project_root(window) -> Path | None:
    project = getattr(window, "project", None)
    return None if project is None else Path(project.root)


def _ask_path(parent, title: str, suffix: str, folder: Path | None = None) -> str | None:
    """A save dialog that opens in ``folder`` (the project), not in the program's working directory."""
    from PySide6.QtWidgets import QFileDialog

    start = str((folder or Path.home()) / f"evaluation{suffix}")
    path, _ = QFileDialog.getSaveFileName(parent, title, start, f"*{suffix}")
    if path and not path.lower().endswith(suffix):
        path += suffix
    return path or None


def export_evaluation_png(window, plots, path: str | None) -> None:
    from anomalyapp.core.errors import AppError
    from anomalyapp.core.files import write_atomically

    if path:
        try:
            write_atomically(path, plots.render_png())
        except AppError as error:
            window.show_error("Evaluation", str(error))


def export_evaluation_csv(window, result: dict, path: str | None) -> None:
    from anomalyapp.core.errors import AppError
    from anomalyapp.services.evaluation import write_scores_csv

    if path:
        try:
            write_scores_csv(path, result)
        except AppError as error:
            window.show_error("Evaluation", str(error))


def edit_preferences(window) -> None:
    from anomalyapp.gui.widgets.settings_dialog import SettingsDialog
    from anomalyapp.services.device import cuda_available

    dialog = SettingsDialog(window.session.app_config, cuda_available(), window)
    if dialog.exec() == QDialog.DialogCode.Accepted:
        window.session.set_config(dialog.config())


def shortcut_rows(window) -> list[tuple[str, str, str]]:
    """(where, keys, what) for every key in the window: its menu actions, the image viewer's actions and the
    camera tab's buttons, read from the widgets themselves so that the list cannot fall behind them."""
    from PySide6.QtGui import QAction, QKeySequence
    from PySide6.QtWidgets import QAbstractButton

    def keys(sequences) -> str:
        return " or ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in sequences if not s.isEmpty())

    rows = [("Window", keys(a.shortcuts()), a.text().replace("&", "").replace("…", ""))
            for a in window.actions() if not a.shortcut().isEmpty()]
    rows += [("Image (when it has the focus)", keys(a.shortcuts()), a.text())
             for a in window.viewer.findChildren(QAction) if not a.shortcut().isEmpty()]
    rows += [("Camera tab", keys([b.shortcut()]), b.toolTip() or b.text())
             for b in window.camera_panel.findChildren(QAbstractButton) if not b.shortcut().isEmpty()]
    rows += [("Review note", "Enter or Esc", "Keep the note and return to the list (G / B decide again)")]
    return rows


def show_shortcuts(window) -> None:
    import html

    sections: dict[str, list[str]] = {}
    for where, keys, what in shortcut_rows(window):
        sections.setdefault(where, []).append(
            f"<tr><td align='right'><b>{html.escape(keys)}</b>&nbsp;&nbsp;</td><td>{html.escape(what)}</td></tr>")
    text = "".join(f"<h4>{html.escape(where)}</h4><table>{''.join(rows)}</table>" for where, rows in sections.items())
    box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", text, QMessageBox.StandardButton.Close, window)
    box.setObjectName("shortcuts_box")
    box.setTextFormat(Qt.TextFormat.RichText)
    window.shortcuts_box = box
    box.open()


def show_about(window) -> None:
    QMessageBox.about(window, "About anomalyapp",
                      f"anomalyapp {__version__}\nOffline visual inspection trained on good images only.")


def confirm_set_aside(window, images) -> None:
    """The threshold panel's Set aside: say where the images go and what follows, then move them (the records
    service checks the user may train and audits each move) and train again. Asked, never assumed."""
    from anomalyapp.services.records import set_aside_folder

    project = window.project
    if not images or project is None or not project.good_folder:
        return
    names = ", ".join(Path(image).name for image in images)
    target = set_aside_folder(project.good_folder)
    box = QMessageBox(QMessageBox.Icon.Question, "Set aside",
                      f"Move {names} out of the good images, into {target}, and train again without "
                      f"{'it' if len(images) == 1 else 'them'}? The move is recorded; the model in use stays until "
                      "the new one is trained.",
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, window)
    box.setObjectName("set_aside_question")
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Yes).setText("Move and train again")

    def answered(button) -> None:
        if box.standardButton(button) == QMessageBox.StandardButton.Yes and window.review.set_aside(list(images)):
            window.start_training()

    box.buttonClicked.connect(answered)
    window.set_aside_question = box
    box.open()


def ask_quit_during_training(window, quit_now) -> None:
    """A training is running: quitting cancels it (the model in use stays as it is). Asked, never assumed."""
    box = QMessageBox(QMessageBox.Icon.Question, "Quit anomalyapp",
                      "A training is running. Quit and cancel it? The model in use stays as it is.",
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, window)
    box.setObjectName("quit_question")
    box.setDefaultButton(QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.Yes).setText("Cancel training and quit")
    box.button(QMessageBox.StandardButton.No).setText("Keep training")
    box.buttonClicked.connect(
        lambda button: quit_now() if box.standardButton(button) == QMessageBox.StandardButton.Yes else None)
    window.quit_question = box
    box.open()
