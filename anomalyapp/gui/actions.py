"""The window's actions, menus and toolbar, and which of them the logged-in person may use."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

# Action attribute -> the permission it needs (services.auth names).
PERMISSIONS = {
    "train_action": "train", "users_action": "manage_users", "inspect_folder_action": "inspect",
    "inspect_files_action": "inspect", "evaluate_action": "inspect", "mark_ok_action": "label",
    "mark_ng_action": "label", "false_positive_action": "train", "watch_folder_action": "inspect",
    # A new project makes the person who creates it its supervisor: not an operator's to do (the service refuses
    # too). A fresh station, where nobody has logged in to anything yet, never reaches this table.
    "new_project_action": "create_project",
}
# Usable by anyone logged in, by nobody while the station is locked.
LOGGED_IN = ("records_action", "open_project_action", "preferences_action", "lock_action", "change_password_action")

# (attribute, text, handler name on the window, shortcut, tip)
_ACTIONS = (
    ("new_project_action", "&New project…", "new_project", QKeySequence.StandardKey.New, ""),
    ("open_project_action", "&Open project…", "open_project_dialog", QKeySequence.StandardKey.Open, ""),
    ("inspect_folder_action", "Inspect &folder…", "inspect_folder_dialog", "Ctrl+I",
     "Score every image in a folder and its subfolders"),
    ("inspect_files_action", "Inspect fi&les…", "inspect_files_dialog", "Ctrl+Shift+I", ""),
    ("watch_folder_action", "&Watch folder…", "watch_folder_dialog", None,
     "Inspect every image the line drops into a folder, as it arrives (start and stop)"),
    ("train_action", "&Train", "start_training", "Ctrl+T", "Train on the good images"),
    ("cancel_action", "&Cancel", "cancel_work", "Esc", "Cancel training or inspection"),
    ("evaluate_action", "&Evaluate…", "evaluate_dialog", "Ctrl+E",
     "Metrics on a folder with ground truth (MVTec layout)"),
    ("next_action", "Next image", "select_next", "N", ""),
    ("previous_action", "Previous image", "select_previous", "P", ""),
    ("mark_ok_action", "Mark OK (a false positive is learned as good)", "mark_ok", "G", ""),
    ("false_positive_action", "Mark false positive (learn as good)", "correct_false_positive", "F2",
     "Mark the selected NG part good and teach the model at once, without retraining"),
    ("mark_ng_action", "Mark NG (defect)", "mark_ng", "B", ""),
    ("zoom_in_action", "Zoom in", "zoom_in", QKeySequence.StandardKey.ZoomIn, ""),
    ("zoom_out_action", "Zoom out", "zoom_out", QKeySequence.StandardKey.ZoomOut, ""),
    ("records_action", "&Records and reports…", "show_records", "Ctrl+R",
     "Search inspections, export CSV/PDF, threshold from labels, model versions"),
    ("users_action", "&Users…", "show_users", None, "Accounts and single-user mode (supervisor)"),
    ("change_password_action", "Change my &password…", "change_password", None, ""),
    ("lock_action", "&Lock station", "lock", "Ctrl+L", ""),
    ("paint_action", "Paint defect region", "toggle_paint", "D", ""),
    ("quit_action", "&Quit", "close", QKeySequence.StandardKey.Quit, ""),
    ("preferences_action", "&Preferences…", "edit_preferences", QKeySequence.StandardKey.Preferences, ""),
    ("shortcuts_action", "&Keyboard shortcuts", "show_shortcuts", None, ""),
    ("about_action", "&About", "show_about", None, ""),
)


def _action(window: QMainWindow, name: str, text: str, slot, shortcut, tip: str) -> QAction:
    action = QAction(text, window)
    tip_text = tip or text.replace("…", "").replace("&", "")
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
        tip_text += f" ({QKeySequence(shortcut).toString()})"
    action.setToolTip(tip_text)
    action.setStatusTip(tip_text)
    action.triggered.connect(lambda *_: slot())
    action.setObjectName(name)
    window.addAction(action)
    setattr(window, name, action)
    return action


def build_actions(window, fill_recent) -> None:
    """Create every action as ``window.<name>`` with its handler ``window.<handler>()``, then the menus and
    the toolbar."""
    for name, text, handler, shortcut, tip in _ACTIONS:
        _action(window, name, text, getattr(window, handler), shortcut, tip)
    window.paint_action.setCheckable(True)
    w = window
    menu = window.menuBar()
    file_menu = menu.addMenu("&Project")
    file_menu.addActions([w.new_project_action, w.open_project_action])
    window.recent_menu = QMenu("Open &recent", window)
    window.recent_menu.aboutToShow.connect(fill_recent)
    file_menu.addMenu(window.recent_menu)
    file_menu.addSeparator()
    file_menu.addAction(w.watch_folder_action)
    file_menu.addSeparator()
    file_menu.addActions([w.records_action, w.users_action, w.change_password_action, w.lock_action])
    file_menu.addSeparator()
    file_menu.addActions([w.preferences_action, w.quit_action])
    inspect_menu = menu.addMenu("&Inspect")
    inspect_menu.addActions([w.inspect_folder_action, w.inspect_files_action, w.evaluate_action])
    inspect_menu.addSeparator()
    inspect_menu.addActions([w.next_action, w.previous_action, w.mark_ok_action, w.mark_ng_action,
                             w.false_positive_action, w.paint_action])
    menu.addMenu("&Model").addActions([w.train_action, w.cancel_action])
    menu.addMenu("&View").addActions([w.zoom_in_action, w.zoom_out_action])
    menu.addMenu("&Help").addActions([w.shortcuts_action, w.about_action])

    toolbar = window.addToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for group in ((w.new_project_action, w.open_project_action), (w.train_action, w.cancel_action),
                  (w.inspect_folder_action, w.inspect_files_action, w.evaluate_action),
                  (w.records_action, w.lock_action)):
        if toolbar.actions():
            toolbar.addSeparator()
        toolbar.addActions(list(group))


def gate(window, access, locked: bool) -> None:
    """Enable what the logged-in person may do; while locked, nothing of the project is reachable."""
    for name, permission in PERMISSIONS.items():
        getattr(window, name).setEnabled(access.can(permission))
    for name in LOGGED_IN:
        getattr(window, name).setEnabled(not locked)
