"""Users and the audit log in the records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from anomalyapp.core.errors import StoreError
from anomalyapp.store.rows import (
    _AUDIT_COLUMNS,
    _USER_COLUMNS,
    ROLES,
    AuditEntry,
    User,
    _audit,
    _now_ms_precision,
    _user,
    to_ms,
)


class AccountRecords:
    """``RecordStore``'s users and audit log."""

    # -- users ------------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str, *, actor_id: int | None = None) -> User:
        """A new account; the name must be unique whatever its case (also beyond ASCII)."""
        name = name.strip()
        if not name:
            raise StoreError("a user name cannot be empty")
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r} (use operator or supervisor)")
        at = _now_ms_precision()
        with self._transaction() as conn:
            taken = [row[0] for row in conn.execute("SELECT name FROM users")]
            if any(other.casefold() == name.casefold() for other in taken):
                raise StoreError(f"a user named {name!r} already exists")
            cursor = conn.execute(
                "INSERT INTO users (name, role, password_hash, created_at, active) VALUES (?, ?, ?, ?, 1)",
                (name, role, password_hash, to_ms(at)),
            )
            user = User(cursor.lastrowid, name, role, True, at)
            self._audit(conn, actor_id if actor_id is not None else user.id, "user_added", f"user:{user.id}",
                        None, f"{name} ({role})")
        return user

    def user(self, user_id: int) -> User | None:
        row = self._read(lambda c: c.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone())
        return _user(row) if row else None

    def users(self) -> list[User]:
        rows = self._read(lambda c: c.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name COLLATE NOCASE").fetchall())
        return [_user(row) for row in rows]

    def user_count(self) -> int:
        return self._read(lambda c: c.execute("SELECT count(*) FROM users").fetchone()[0])

    def credentials(self, name: str) -> tuple[User, str] | None:
        """The account with this name (any case) and its password hash; for authentication only."""
        key = name.strip().casefold()
        rows = self._read(lambda c: c.execute(f"SELECT {_USER_COLUMNS}, password_hash FROM users").fetchall())
        for row in rows:
            if row[1].casefold() == key:
                return _user(row[:5]), row[5]
        return None

    def set_password_hash(self, user_id: int, password_hash: str, *, actor_id: int | None,
                          action: str = "password_changed") -> None:
        with self._transaction() as conn:
            self._require_user(conn, user_id)
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            self._audit(conn, actor_id, action, f"user:{user_id}")  # never the hash itself

    def set_role(self, user_id: int, role: str, *, actor_id: int | None) -> User:
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r} (use operator or supervisor)")
        with self._transaction() as conn:
            old = self._require_user(conn, user_id)
            if old.role != role:
                conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
                self._audit(conn, actor_id, "role_changed", f"user:{user_id}", old.role, role)
        return replace(old, role=role)

    def set_active(self, user_id: int, active: bool, *, actor_id: int | None) -> User:
        with self._transaction() as conn:
            old = self._require_user(conn, user_id)
            if old.active != active:
                conn.execute("UPDATE users SET active = ? WHERE id = ?", (int(active), user_id))
                self._audit(conn, actor_id, "user_activated" if active else "user_deactivated", f"user:{user_id}",
                            str(old.active).lower(), str(active).lower())
        return replace(old, active=active)

    def _require_user(self, conn, user_id: int) -> User:
        row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise StoreError(f"no user {user_id} in {self.path}")
        return _user(row)

    # -- audit log --------------------------------------------------------------------------------

    def add_audit_entry(self, action: str, subject: str, old_value=None, new_value=None, *,
                        user_id: int | None, at: datetime | None = None) -> None:
        """An audit entry of its own (e.g. a login attempt); joins the caller's transaction when there is one.
        ``at``: the time to record, when the caller keeps its own clock (login throttling); default now."""
        with self._transaction() as conn:
            self._audit(conn, user_id, action, subject, old_value, new_value, at=at)

    def audit_entries(self, *, actions: Sequence[str], limit: int, subject: str | None = None,
                      subject_prefix: str | None = None) -> list[AuditEntry]:
        """Entries with one of ``actions``, for one ``subject`` or every subject under ``subject_prefix``
        (e.g. all 'login:...'), newest first. Both subject filters use the subject index."""
        if subject is not None:
            low, high = subject, subject + "\0"
        else:
            low = subject_prefix
            high = subject_prefix[:-1] + chr(ord(subject_prefix[-1]) + 1)  # the first string past the prefix
        marks = ", ".join("?" * len(actions))
        rows = self._read(lambda c: c.execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE subject >= ? AND subject < ? AND action IN ({marks}) "
            "ORDER BY id DESC LIMIT ?", (low, high, *actions, limit)).fetchall())
        return [_audit(row) for row in rows]

    def audit_log(self, *, subject: str | None = None, limit: int | None = None, offset: int = 0) -> list[AuditEntry]:
        """Audit entries, newest first; ``subject`` like 'inspection:42', 'user:3' or 'setting:single_user'."""
        where, params = ("WHERE subject = ?", [subject]) if subject else ("", [])
        rows = self._read(lambda c: c.execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            params + [-1 if limit is None else limit, offset]).fetchall())
        return [_audit(row) for row in rows]
