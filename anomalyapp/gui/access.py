"""Who is at the station: the project's records, the logged-in user and what they may do."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from anomalyapp.core.errors import AppError
from anomalyapp.services import auth
from anomalyapp.services.records import RecordsService


class AccessController(QObject):
    user_changed = Signal(object)  # User or None (locked / nobody)
    login_needed = Signal()
    first_user_needed = Signal()
    error = Signal(str)
    records_warning = Signal(str)  # the records were changed outside the app (found when the project opened)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.records: RecordsService | None = None
        self.user = None

    def open_project(self, project) -> None:
        if self.records is not None:
            self.records.close()
        self.records = RecordsService(project.root)
        warning = self.records.check_at_open()
        if warning:
            self.records_warning.emit(warning)
        self._set_user(None)
        if self.records.auth.needs_first_user():
            self.first_user_needed.emit()
            return
        user = self.records.auth.auto_login()
        if user is not None:
            self._set_user(user)
        else:
            self.login_needed.emit()

    def close(self) -> None:
        if self.records is not None:
            self.records.close()
            self.records = None

    def _set_user(self, user) -> None:
        self.user = user
        self.user_changed.emit(user)

    def create_first_supervisor(self, name: str, password: str, single_user: bool) -> None:
        """Raises AppError (e.g. a weak password) for the dialog to show."""
        user = self.records.auth.create_first_supervisor(name, password)
        if single_user:
            self.records.auth.set_single_user_mode(user, True)
        self._set_user(user)

    def login(self, name: str, password: str) -> None:
        self._set_user(self.records.auth.authenticate(name, password))

    def change_own_password(self, current: str, new: str) -> None:
        """Raises AppError (wrong current password, a weak new one) for the dialog to show; the service audits."""
        self.records.auth.set_password(self.user, self.user.id, new, old_password=current)

    def lock(self) -> None:
        if self.records is None or self.records.auth.needs_first_user():
            return
        if self.records.auth.single_user_mode():
            # Its account may have no password anyone knows (a new or demo project): locking would lock out.
            self.error.emit("this is a single-user station: add accounts and switch single-user mode off "
                            "(Project → Users) before locking it")
            return
        self._set_user(None)
        self.login_needed.emit()

    def can(self, permission: str) -> bool:
        return auth.can(self.user, permission)

    def require(self, permission: str) -> bool:
        """True when allowed; otherwise reports why and returns False."""
        try:
            auth.require(self.user, permission)
        except AppError as error:
            self.error.emit(str(error))
            return False
        return True

    @property
    def user_text(self) -> str:
        if self.user is None:
            return "not logged in"
        single = self.records is not None and self.records.auth.single_user_mode()
        return f"{self.user.name} ({self.user.role}{', single-user' if single else ''})"
