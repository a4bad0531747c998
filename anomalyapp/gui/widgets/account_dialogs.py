"""Login (also the lock screen), the first supervisor, and user management. Thin: callbacks do the work."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from anomalyapp.core.errors import AppError


def _password_field(name: str) -> QLineEdit:
    field = QLineEdit()
    field.setObjectName(name)
    field.setEchoMode(QLineEdit.EchoMode.Password)
    return field


class LoginDialog(QDialog):
    """Asks for name and password until ``attempt`` accepts them; also shown when the station is locked."""

    def __init__(self, attempt: Callable[[str, str], None], project_name: str, locked: bool = False, parent=None):
        super().__init__(parent)
        self.setObjectName("login_dialog")
        self.setWindowTitle("Station locked" if locked else "Log in")
        self.setModal(True)
        self._attempt = attempt
        heading = QLabel(f"<b>{project_name}</b><br>{'Locked. ' if locked else ''}Log in to continue.")
        self.name = QLineEdit()
        self.name.setObjectName("login_name")
        self.password = _password_field("login_password")
        self.message = QLabel("")
        self.message.setObjectName("login_message")
        self.message.setStyleSheet("color: #d64541")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Log in")
        buttons.accepted.connect(self._try)
        form = QFormLayout(self)
        form.addRow(heading)
        form.addRow("User", self.name)
        form.addRow("Password", self.password)
        form.addRow(self.message)
        form.addRow(buttons)

    def _try(self) -> None:
        try:
            self._attempt(self.name.text().strip(), self.password.text())
        except AppError as error:
            self.message.setText(str(error))
            self.password.clear()
            return
        self.accept()

    def reject(self) -> None:  # Escape must not bypass the lock
        pass


class FirstSupervisorDialog(QDialog):
    """A new project's first account: a supervisor, optionally as a single-user station (no login)."""

    def __init__(self, create: Callable[[str, str, bool], None], parent=None):
        super().__init__(parent)
        self.setObjectName("first_user_dialog")
        self.setWindowTitle("Create the supervisor account")
        self._create = create
        import getpass

        self.name = QLineEdit(getpass.getuser())
        self.name.setObjectName("first_user_name")
        self.password = _password_field("first_user_password")
        self.repeat = _password_field("first_user_repeat")
        self.single_user = QCheckBox("Single-user station: start logged in, no password prompt")
        self.single_user.setObjectName("first_user_single")
        self.single_user.setChecked(True)
        self.message = QLabel("At least 8 characters with an upper-case letter, a lower-case letter and a digit.")
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self._try)
        form = QFormLayout(self)
        form.addRow(QLabel("This project has no accounts yet. The supervisor trains models, sets the threshold\n"
                           "and manages the operators' accounts."))
        form.addRow("Name", self.name)
        form.addRow("Password", self.password)
        form.addRow("Repeat", self.repeat)
        form.addRow(self.single_user)
        form.addRow(self.message)
        form.addRow(buttons)

    def _try(self) -> None:
        if self.password.text() != self.repeat.text():
            self.message.setText("the two passwords differ")
            return
        try:
            self._create(self.name.text().strip(), self.password.text(), self.single_user.isChecked())
        except AppError as error:
            self.message.setText(str(error))
            return
        self.accept()

    def reject(self) -> None:
        pass


class ChangePasswordDialog(QDialog):
    """Anyone logged in changes their own password, giving the current one (supervisors reset others' in Users)."""

    def __init__(self, change: Callable[[str, str], None], user_name: str, parent=None):
        super().__init__(parent)
        self.setObjectName("change_password_dialog")
        self.setWindowTitle("Change my password")
        self._change = change
        self.current = _password_field("current_password")
        self.new = _password_field("new_password")
        self.repeat = _password_field("repeat_password")
        self.message = QLabel("At least 8 characters with an upper-case letter, a lower-case letter and a digit.")
        self.message.setObjectName("change_password_message")
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Change")
        buttons.accepted.connect(self._try)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(QLabel(f"<b>{user_name}</b>"))
        form.addRow("Current password", self.current)
        form.addRow("New password", self.new)
        form.addRow("Repeat", self.repeat)
        form.addRow(self.message)
        form.addRow(buttons)

    def _try(self) -> None:
        if self.new.text() != self.repeat.text():
            self.message.setText("the two new passwords differ")
            return
        try:
            self._change(self.current.text(), self.new.text())
        except AppError as error:
            self.message.setText(str(error))
            self.current.clear()
            return
        self.accept()


class UsersDialog(QDialog):
    """Supervisors: add operators and supervisors, change roles, deactivate, single-user mode."""

    def __init__(self, auth_service, actor, parent=None):
        super().__init__(parent)
        self.setObjectName("users_dialog")
        self.setWindowTitle("Users")
        self.auth, self.actor = auth_service, actor
        self.table = QTableWidget(0, 3)
        self.table.setObjectName("users_table")
        self.table.setHorizontalHeaderLabels(["Name", "Role", "Active"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.new_name = QLineEdit()
        self.new_name.setObjectName("new_user_name")
        self.new_name.setPlaceholderText("name")
        self.new_password = _password_field("new_user_password")
        self.new_password.setPlaceholderText("password")
        # Typed twice, as everywhere a password is set: a typo would make an account nobody can log in to.
        self.new_password_again = _password_field("new_user_password_again")
        self.new_password_again.setPlaceholderText("password again")
        self.new_role = QComboBox()
        self.new_role.setObjectName("new_user_role")
        self.new_role.addItems(["operator", "supervisor"])
        add = QPushButton("Add user")
        add.setObjectName("add_user_button")
        add.clicked.connect(self._add)
        toggle_role = QPushButton("Switch role")
        toggle_role.clicked.connect(self._switch_role)
        deactivate = QPushButton("Deactivate / reactivate")
        deactivate.clicked.connect(self._toggle_active)
        set_password = QPushButton("Set password…")
        set_password.setObjectName("set_password_button")
        set_password.setToolTip("Set or reset the selected user's password (yours when nobody is selected)")
        set_password.clicked.connect(self._set_password)
        self.single_user = QCheckBox(f"Single-user station: start logged in as {actor.name}, no login prompt")
        self.single_user.setObjectName("single_user_toggle")
        self.single_user.setChecked(self.auth.single_user_mode())
        self.single_user.toggled.connect(self._single_user)
        row = QHBoxLayout()
        for widget in (self.new_name, self.new_password, self.new_password_again, self.new_role, add):
            row.addWidget(widget)
        actions = QHBoxLayout()
        actions.addWidget(toggle_role)
        actions.addWidget(deactivate)
        actions.addWidget(set_password)
        actions.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(actions)
        layout.addLayout(row)
        layout.addWidget(self.single_user)
        self.message = QLabel("")
        self.message.setObjectName("users_message")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d64541")
        layout.addWidget(self.message)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        self.resize(560, 400)
        self._refresh()

    def _refresh(self) -> None:
        users = self.auth.users()
        self.table.setRowCount(len(users))
        for row, user in enumerate(users):
            for column, text in enumerate((user.name, user.role, "yes" if user.active else "no")):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, user.id)
                self.table.setItem(row, column, item)

    def _run(self, action) -> None:
        """Do it; a refusal is shown as one line in the dialog."""
        self.message.setText("")
        try:
            action()
        except AppError as error:
            self.message.setText(str(error))
        self._refresh()

    def _selected(self):
        items = self.table.selectedItems()
        return None if not items else next(u for u in self.auth.users() if u.id == items[0].data(Qt.ItemDataRole.UserRole))

    def _add(self) -> None:
        name = self.new_name.text().strip()
        if self.new_password.text() != self.new_password_again.text():
            self.message.setText(f"the two passwords typed for {name or 'the new user'} differ: nobody was added")
            self.new_password_again.clear()
            return

        def add():
            self.auth.add_user(self.actor, name, self.new_password.text(), self.new_role.currentText())
            self.new_name.clear()
            self.new_password.clear()
            self.new_password_again.clear()

        self._run(add)

    def _switch_role(self) -> None:
        user = self._selected()
        if user is not None:
            self._run(lambda: self.auth.set_role(self.actor, user.id, "operator" if user.is_supervisor else "supervisor"))

    def _toggle_active(self) -> None:
        user = self._selected()
        if user is not None:
            method = self.auth.deactivate_user if user.active else self.auth.reactivate_user
            self._run(lambda: method(self.actor, user.id))

    # Both ask with QInputDialog; tests replace these two to type the answers.
    def ask_password(self, title: str, label: str) -> str | None:
        text, ok = QInputDialog.getText(self, title, label, QLineEdit.EchoMode.Password)
        return text if ok else None

    def _set_password(self) -> None:
        """Typed twice, as in Change my password: a typo would leave the account with a password nobody knows."""
        user = self._selected() or self.actor
        password = self.ask_password("Set password", f"New password for {user.name}:")
        if password is None:
            return
        repeat = self.ask_password("Set password", f"The new password for {user.name} again:")
        if repeat is None:
            return
        if repeat != password:
            self.message.setText(f"the two passwords typed for {user.name} differ: nothing was changed")
            return
        self._run(lambda: self.auth.set_password(self.actor, user.id, password))

    def _single_user(self, enabled: bool) -> None:
        password = None
        if not enabled:
            # Logins come back: prove now that a supervisor (you) can log in afterwards.
            password = self.ask_password("Single-user mode off",
                                         "Logins will be asked for. To switch single-user mode off, "
                                         f"type your password ({self.actor.name}):")
        self._run(lambda: self.auth.set_single_user_mode(self.actor, enabled, password))
        self.single_user.blockSignals(True)
        self.single_user.setChecked(self.auth.single_user_mode())  # unchanged when refused
        self.single_user.blockSignals(False)
