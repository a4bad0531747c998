"""Model versions and settings in the records."""

from __future__ import annotations

from anomalyapp.core.errors import StoreError
from anomalyapp.store.rows import (
    _VERSION_COLUMNS,
    ModelVersion,
    _now_ms_precision,
    _version,
    to_ms,
)

CURRENT_MODEL_VERSION = "current_model_version"  # settings key: id of the model version in use


class VersionRecords:
    """``RecordStore``'s model versions and settings."""

    # -- model versions ---------------------------------------------------------------------------

    def add_model_version(self, folder: str, change: str, threshold: float, *, parent_id: int | None = None,
                          user_id: int | None = None, make_current: bool = True) -> ModelVersion:
        """A new model version (and, by default, make it the one in use), audited, in one transaction."""
        at = _now_ms_precision()
        with self._transaction() as conn:
            if parent_id is not None and conn.execute(
                    "SELECT 1 FROM model_versions WHERE id = ?", (parent_id,)).fetchone() is None:
                raise StoreError(f"no model version {parent_id} in {self.path}")
            cursor = conn.execute(
                "INSERT INTO model_versions (parent_id, folder, change, threshold, user_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (parent_id, folder, change, float(threshold), user_id, to_ms(at)),
            )
            version = ModelVersion(cursor.lastrowid, parent_id, folder, change, float(threshold), user_id, at)
            self._audit(conn, user_id, "model_version_added", f"model_version:{version.id}", None,
                        f"{folder}: {change} (threshold {threshold:.4g})")
            if make_current:
                self._set_setting(conn, CURRENT_MODEL_VERSION, str(version.id), user_id)
        return version

    def model_version(self, version_id: int) -> ModelVersion | None:
        row = self._read(lambda c: c.execute(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE id = ?", (version_id,)).fetchone())
        return _version(row) if row else None

    def model_versions(self) -> list[ModelVersion]:
        rows = self._read(lambda c: c.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions ORDER BY id").fetchall())
        return [_version(row) for row in rows]

    def current_model_version(self) -> ModelVersion | None:
        value = self.get_setting(CURRENT_MODEL_VERSION)
        return self.model_version(int(value)) if value else None

    def set_current_model_version(self, version_id: int, *, user_id: int | None, action: str = "setting_changed") -> ModelVersion:
        with self._transaction() as conn:
            row = conn.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE id = ?", (version_id,)).fetchone()
            if row is None:
                raise StoreError(f"no model version {version_id} in {self.path}")
            self._set_setting(conn, CURRENT_MODEL_VERSION, str(version_id), user_id, action)
        return _version(row)

    # -- settings ---------------------------------------------------------------------------------

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self._read(lambda c: c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone())
        return row[0] if row and row[0] is not None else default

    def settings(self) -> dict[str, str | None]:
        return dict(self._read(lambda c: c.execute("SELECT key, value FROM settings ORDER BY key").fetchall()))

    def setting_history(self, keys: tuple[str, ...]) -> list[tuple[str, str | None]]:
        """Every recorded change of the settings ``keys``, oldest first: (key, new value; None when removed).
        Read from the audit log, which holds each change with its value (the settings table only the last)."""
        subjects = [f"setting:{key}" for key in keys]
        marks = ", ".join("?" * len(subjects))
        rows = self._read(lambda c: c.execute(
            f"SELECT subject, new_value FROM audit_log WHERE subject IN ({marks}) ORDER BY id", subjects).fetchall())
        return [(subject.removeprefix("setting:"), value) for subject, value in rows]

    def set_setting(self, key: str, value: str | None, *, user_id: int | None) -> bool:
        """Set (or with None remove) a setting, audited with old and new value; False when unchanged."""
        with self._transaction() as conn:
            return self._set_setting(conn, key, value, user_id)

    def _set_setting(self, conn, key: str, value: str | None, user_id: int | None, action: str = "setting_changed") -> bool:
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        old = row[0] if row else None
        value = None if value is None else str(value)
        if old == value:
            return False
        if value is None:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
        self._audit(conn, user_id, action, f"setting:{key}", old, value)
        return True
