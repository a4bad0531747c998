"""Tamper evidence: the ledger chains every row that matters, and an edit made outside the app is named.

Each edit here is made as someone with a plain SQLite tool would make it: a raw ``sqlite3`` connection to the
real file, without the app's functions (so its triggers refuse), then with the triggers dropped.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from datetime import UTC, datetime

import pytest

from anomalyapp.store import schema
from anomalyapp.store.records import InspectionRecord, RecordStore

PNG = b"\x89PNG\r\n\x1a\n" + b"region"


def _raw(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


@pytest.fixture
def path(tmp_path):
    """A records file with every kind of row, each written through the app."""
    path = tmp_path / "records.sqlite3"
    with RecordStore.open(path) as store:
        boss = store.add_user("Maria", "supervisor", "hash-m")
        anna = store.add_user("Anna", "operator", "hash-a", actor_id=boss.id)
        version = store.add_model_version("m1", "trained", 0.5, user_id=boss.id)
        store.add_model_version("m1", "threshold 0.550", 0.55, parent_id=version.id, user_id=boss.id)
        store.set_current_model_version(version.id, user_id=boss.id)
        records = store.record_inspections([
            InspectionRecord(f"/line/part_{i:02d}.png", i / 10, "NG" if i >= 5 else "OK", 0.5, raw_score=i / 3,
                             content_sha256=f"{i:064x}", model_version_id=version.id, user_id=anna.id)
            for i in range(8)])
        store.record_inspection(InspectionRecord("/line/cam.png", 0.7, "NG", 0.5, source="camera"))
        store.add_label(records[6].id, "OK", note="dust", region_png=PNG, user_id=anna.id)
        store.add_label(records[6].id, "NG", user_id=boss.id)
        store.set_role(anna.id, "supervisor", actor_id=boss.id)
        store.set_role(anna.id, "operator", actor_id=boss.id)
        store.set_active(anna.id, False, actor_id=boss.id)
        store.set_password_hash(boss.id, "hash-m2", actor_id=boss.id)
        store.set_setting("single_user", "1", user_id=boss.id)
        store.set_setting("single_user", None, user_id=boss.id)  # a removed setting is chained as removed
        store.set_setting("uncertain_low", "0.45", user_id=boss.id)
    return path


def _verify(path, full=True):
    with RecordStore.open(path) as store:
        return store.verify_ledger(full=full)


def _ids(conn, sql) -> list[int]:
    return [row[0] for row in conn.execute(sql)]


def test_records_written_by_the_app_are_intact_and_every_row_is_chained(path):
    report = _verify(path)
    assert report.intact, report.problems()
    conn = _raw(path)
    rows = sum(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in schema.LEDGER_TABLES)
    chained = {(table, key) for table, key in conn.execute("SELECT table_name, row_key FROM ledger")}
    label_row = conn.execute("SELECT inspection_id FROM labels ORDER BY id DESC LIMIT 1").fetchone()[0]
    updates_of_labelled = conn.execute(
        "SELECT count(*) FROM ledger WHERE table_name = 'inspections' AND row_key = ?", (str(label_row),)).fetchone()[0]
    conn.close()
    assert report.rows_checked == rows
    for table in schema.LEDGER_TABLES:  # every row of every table has its entry
        conn = _raw(path)
        keys = {str(k) for k in _ids(conn, f"SELECT {schema.LEDGER_TABLES[table][0]} FROM {table}")}
        conn.close()
        assert {(table, key) for key in keys} <= chained
    assert updates_of_labelled == 3  # recorded, then each label changed its current label: an entry each time
    assert len(report.head_sha256) == 64 and report.entries > rows


def test_plain_sqlite_cannot_change_or_delete_chained_rows_while_the_triggers_stand(path):
    conn = _raw(path)
    for statement, reason in [
        ("UPDATE users SET role = 'supervisor' WHERE name = 'Anna'", "no such function"),
        ("UPDATE inspections SET verdict = 'OK' WHERE id = 6", "no such function"),
        ("UPDATE settings SET value = '0.1' WHERE key = 'uncertain_low'", "no such function"),
        ("UPDATE model_versions SET threshold = 0.9", "no such function"),
        ("INSERT INTO labels (inspection_id, label, created_at) VALUES (1, 'NG', 0)", "no such function"),
        ("INSERT INTO audit_log (at, action, subject) VALUES (0, 'x', 'y')", "no such function"),
        ("INSERT INTO users (name, role, password_hash, created_at) VALUES ('Eve', 'supervisor', 'x', 0)",
         "no such function"),
        ("DELETE FROM users WHERE name = 'Anna'", "cannot be deleted"),
        ("DELETE FROM inspections WHERE id = 6", "cannot be deleted"),
        ("DELETE FROM settings", "no such function"),
        ("UPDATE ledger SET row_sha256 = NULL", "append-only"),
        ("DELETE FROM ledger WHERE id > 3", "append-only"),
        ("UPDATE audit_log SET new_value = 'x'", "append-only"),
        ("DELETE FROM labels", "history"),
    ]:
        with pytest.raises(sqlite3.DatabaseError, match=reason):
            conn.execute(statement)
    conn.close()
    assert _verify(path).intact


def test_each_edit_made_after_dropping_the_triggers_is_named(path):
    conn = _raw(path)
    anna = conn.execute("SELECT id FROM users WHERE name = 'Anna'").fetchone()[0]
    audit_id = conn.execute("SELECT id FROM audit_log WHERE action = 'role_changed' ORDER BY id LIMIT 1").fetchone()[0]
    ng = conn.execute("SELECT id FROM inspections WHERE verdict = 'NG' ORDER BY id LIMIT 1").fetchone()[0]
    conn.execute("DROP TRIGGER users_ledger_update")
    conn.execute("UPDATE users SET role = 'supervisor' WHERE id = ?", (anna,))
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id = ?", (audit_id,))
    conn.execute("DROP TRIGGER inspections_ledger_update")
    conn.execute("UPDATE inspections SET verdict = 'OK' WHERE id = ?", (ng,))
    conn.close()

    report = _verify(path)
    assert not report.intact
    assert report.edited == (("users", str(anna)), ("inspections", str(ng)))
    assert report.deleted == (("audit_log", str(audit_id)),)
    assert report.triggers_dropped == ("audit_log_no_delete", "inspections_ledger_update", "users_ledger_update")
    assert not report.chain_breaks and not report.missing_entries and not report.unrecorded
    text = "\n".join(report.problems())
    assert f"edited outside the app: users {anna}, inspections {ng}" in text
    assert f"deleted outside the app: audit_log {audit_id}" in text
    assert "trigger(s) dropped: audit_log_no_delete, inspections_ledger_update, users_ledger_update" in text
    quick = _verify(path, full=False)  # the quick check at open sees the dropped triggers at least
    assert not quick.intact and quick.triggers_dropped == report.triggers_dropped


def test_an_edit_is_found_even_when_the_dropped_trigger_is_put_back_as_it_was(path):
    conn = _raw(path)
    trigger_sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'inspections_ledger_update'").fetchone()[0]
    score = conn.execute("SELECT score FROM inspections WHERE id = 3").fetchone()[0]
    conn.execute("DROP TRIGGER inspections_ledger_update")
    # The smallest possible change to a score: the next representable float.
    conn.execute("UPDATE inspections SET score = ? WHERE id = 3", (math.nextafter(score, 2.0),))
    conn.execute(trigger_sql)
    conn.close()
    report = _verify(path)
    assert report.edited == (("inspections", "3"),)
    assert not report.triggers_dropped and not report.triggers_changed


def test_a_trigger_replaced_by_a_harmless_one_of_the_same_name_is_named(path):
    conn = _raw(path)
    conn.execute("DROP TRIGGER labels_no_delete")
    conn.execute("CREATE TRIGGER labels_no_delete BEFORE DELETE ON labels BEGIN SELECT 1; END")
    conn.execute("CREATE TRIGGER quiet AFTER INSERT ON inspections BEGIN SELECT 1; END")
    conn.close()
    report = _verify(path)
    assert report.triggers_changed == ("labels_no_delete",) and report.triggers_added == ("quiet",)


def test_a_row_inserted_outside_the_app_has_no_ledger_entry(path):
    conn = _raw(path)
    conn.execute("INSERT INTO inspections (image_path, file_name, inspected_at, score, verdict, threshold) "
                 "VALUES ('/line/forged.png', 'forged.png', 0, 0.1, 'OK', 0.5)")
    forged = conn.execute("SELECT max(id) FROM inspections").fetchone()[0]
    conn.close()
    report = _verify(path)
    assert report.unrecorded == (("inspections", str(forged)),)
    assert "inserted outside the app (no ledger entry): inspections" in "\n".join(report.problems())
    assert _verify(path, full=False).unrecorded == (("inspections", str(forged)),)  # the newest row: seen at open too


def test_a_forged_ledger_entry_breaks_the_chain_there(path):
    """Someone who edits a row and rewrites its ledger entry's row hash to match: the chain names the entry."""
    conn = _raw(path)
    anna = conn.execute("SELECT * FROM users WHERE name = 'Anna'").fetchone()
    entry = conn.execute("SELECT max(id) FROM ledger WHERE table_name = 'users' AND row_key = ?",
                         (str(anna[0]),)).fetchone()[0]
    for name in ("users_ledger_update", "ledger_no_update"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE users SET active = 1 WHERE id = ?", (anna[0],))
    values = conn.execute(f"SELECT {', '.join(schema.LEDGER_TABLES['users'])} FROM users WHERE id = ?",
                          (anna[0],)).fetchone()
    conn.execute("UPDATE ledger SET row_sha256 = ? WHERE id = ?", (schema.row_sha256("users", *values), entry))
    conn.close()
    report = _verify(path)
    assert report.chain_breaks == (entry,)
    assert not report.edited  # the row matches its (forged) entry: the chain is what gives it away
    assert f"ledger chain broken at entry {entry}" in report.problems()


def test_removed_ledger_entries_are_named_in_the_middle_and_at_the_end(path):
    conn = _raw(path)
    newest = conn.execute("SELECT max(id) FROM ledger").fetchone()[0]
    conn.execute("DROP TRIGGER ledger_no_delete")
    conn.execute("DELETE FROM ledger WHERE id IN (4, 5)")
    conn.execute("DELETE FROM ledger WHERE id >= ?", (newest - 1,))
    conn.close()
    report = _verify(path)
    assert report.missing_entries == ((4, 5), (newest - 1, newest))
    assert report.chain_breaks == (6,)  # the entry after the gap no longer follows from the one before it
    assert "ledger entries removed: 4-5" in "\n".join(report.problems())
    assert report.unrecorded or report.edited  # the rows those entries vouched for lost their newest entry
    assert _verify(path, full=False).missing_entries  # the quick check sees the numbering too


def test_records_from_before_the_ledger_are_chained_once_at_migration(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = _raw(path)
    schema.migrate(conn, path, target=3)
    conn.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES ('Anna', 'operator', 'x', 0)")
    conn.execute("INSERT INTO inspections (image_path, file_name, inspected_at, score, verdict, threshold) "
                 "VALUES ('/a/p.png', 'p.png', 1000, 0.8, 'NG', 0.5)")
    conn.execute("INSERT INTO labels (inspection_id, label, note, region_png, created_at) VALUES (1, 'OK', 'é', ?, 1)",
                 (PNG,))
    conn.execute("INSERT INTO settings (key, value) VALUES ('single_user', '1')")
    conn.execute("INSERT INTO audit_log (at, action, subject) VALUES (5, 'label_added', 'inspection:1')")
    conn.close()

    with RecordStore.open(path) as store:
        assert store.schema_version == schema.SCHEMA_VERSION
        report = store.verify_ledger()
        assert report.intact, report.problems()
        (started,) = store.audit_log(subject="ledger")
        assert started.action == "ledger_started"
        assert "1 users" in started.new_value and "1 inspections" in started.new_value
        store.add_label(1, "NG")  # and it goes on chaining
        assert store.verify_ledger().intact

    conn = _raw(path)
    conn.execute("DROP TRIGGER users_ledger_update")
    conn.execute("UPDATE users SET role = 'supervisor'")
    conn.close()
    assert _verify(path).edited == (("users", "1"),)


def test_verify_changes_nothing_and_joins_a_callers_transaction(path):
    with RecordStore.open(path) as store:
        first = store.verify_ledger()
        with store.transaction():
            store.record_inspection(InspectionRecord("/line/later.png", 0.2, "OK", 0.5,
                                                     inspected_at=datetime(2024, 5, 3, tzinfo=UTC)))
            inside = store.verify_ledger()  # sees the caller's uncommitted rows with their entries
        again = store.verify_ledger()
    assert first.intact and inside.intact and again.intact
    assert inside.entries == again.entries == first.entries + 1 and inside.head_sha256 == again.head_sha256


def test_the_canonical_forms_are_fixed():
    """The hash rules are part of the file format: a change here would make every older file look edited."""
    assert schema.row_sha256("labels", 1, 2, "OK", "é", PNG, None, 1.5).hex() == (
        hashlib.sha256(
            b'["labels",1,2,"OK","\\u00e9",{"blob":"89504e470d0a1a0a726567696f6e"},null,1.5]').hexdigest())
    row = bytes(range(32))
    assert schema.chain_sha256(None, "settings", "k", row) == hashlib.sha256(
        bytes(32) + b"\x01" + row + b"settings\x00k").digest()
    assert schema.chain_sha256(row, "settings", "k", None) == hashlib.sha256(
        row + b"\x00settings\x00k").digest()
