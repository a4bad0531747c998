"""The records database: migrations, refusals, append-only audit, atomic decisions, threads, and kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from anomalyapp.core.errors import StoreError
from anomalyapp.store import schema
from anomalyapp.store.records import InspectionQuery, InspectionRecord, RecordStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path):
    with RecordStore.open(tmp_path / "records.sqlite3") as opened:
        yield opened


def _inspection(name="a.png", score=0.3, verdict="OK", at=None, **extra) -> InspectionRecord:
    return InspectionRecord(f"/line/{name}", score, verdict, 0.5, inspected_at=at, **extra)


def _raw(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# --------------------------------------------------------------------------------------------------
# opening and migrating


def test_new_database_is_migrated_with_durable_settings(store):
    assert store.schema_version == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
    conn = store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"inspections", "labels", "users", "model_versions", "settings", "audit_log"} <= tables


def test_version_1_file_is_migrated_to_current_keeping_its_data(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = _raw(path)
    assert schema.migrate(conn, path, target=1) == 1
    conn.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES ('Anna', 'operator', 'x', 0)")
    conn.execute(
        "INSERT INTO inspections (image_path, inspected_at, score, verdict, threshold) "
        "VALUES ('C:\\\\line\\\\Part_07.PNG', 1000, 0.8, 'NG', 0.5)"
    )
    conn.execute("INSERT INTO labels (inspection_id, label, user_id, created_at) VALUES (1, 'OK', 1, 1)")
    conn.execute("INSERT INTO labels (inspection_id, label, user_id, created_at) VALUES (1, 'NG', 1, 2)")
    conn.close()

    with RecordStore.open(path) as store:
        assert store.schema_version == schema.SCHEMA_VERSION
        (record,) = store.query_inspections(InspectionQuery(name_contains="part_07"))
        assert record.label == "NG"  # the newest label is the current one
        assert record.file_name == "Part_07.PNG"
        assert [lab.label for lab in store.labels_for(record.id)] == ["OK", "NG"]
        store.add_label(record.id, "OK", user_id=1)  # the trigger added by version 2 keeps the label current
        assert store.inspection(record.id).label == "OK"


def test_failed_migration_leaves_the_older_version(tmp_path, monkeypatch):
    path = tmp_path / "r.sqlite3"
    conn = _raw(path)
    schema.migrate(conn, path, target=1)
    monkeypatch.setattr(schema, "MIGRATIONS", [schema.MIGRATIONS[0], schema.MIGRATIONS[1] + "\nCREATE TABLE users (x);\n"])
    with pytest.raises(StoreError, match="version 2"):
        schema.migrate(conn, path, target=2)
    assert schema.schema_version(conn) == 1
    columns = {row[1] for row in conn.execute("PRAGMA table_info(inspections)")}
    assert "file_name" not in columns  # the half-done migration was rolled back
    conn.close()


def test_newer_database_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "future.sqlite3"
    conn = _raw(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer anomalyapp") as info:
        RecordStore.open(path)
    assert str(path) in str(info.value)


def test_garbage_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "records.sqlite3"
    path.write_bytes(b"this is a spreadsheet, not a database " * 200)
    with pytest.raises(StoreError) as info:
        RecordStore.open(path)
    assert str(path) in str(info.value)
    assert "not a database" in str(info.value)


def test_damaged_pages_are_reported(tmp_path):
    path = tmp_path / "records.sqlite3"
    with RecordStore.open(path) as store:
        store.record_inspections([_inspection(f"{i:05d}.png", i / 3000) for i in range(3000)])
    conn = _raw(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(page * 3, len(data) - page, page * 2):  # scribble over every other page
        data[start + 8:start + 400] = os.urandom(392)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged|malformed|not a database") as info:
        RecordStore.open(path)
    assert str(path) in str(info.value)


def test_missing_folder_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        RecordStore.open(tmp_path / "no" / "such" / "records.sqlite3")


def test_closed_store_refuses_use(tmp_path):
    store = RecordStore.open(tmp_path / "r.sqlite3")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count_inspections()


# --------------------------------------------------------------------------------------------------
# append-only history and atomic decisions


def test_audit_log_is_append_only(store):
    store.set_setting("single_user", "1", user_id=None)
    conn = _raw(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit_log SET new_value = '0'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit_log")
    conn.close()
    assert [e.new_value for e in store.audit_log()] == ["1"]


def test_labels_are_history_that_cannot_be_rewritten(store):
    record = store.record_inspection(_inspection())
    store.add_label(record.id, "NG")
    conn = _raw(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="history"):
        conn.execute("UPDATE labels SET label = 'OK'")
    with pytest.raises(sqlite3.DatabaseError, match="history"):
        conn.execute("DELETE FROM labels")
    conn.close()


def test_label_and_its_audit_entry_are_written_together(store):
    record = store.record_inspection(_inspection())
    label = store.add_label(record.id, "NG", note="scratch", user_id=None)
    (entry,) = store.audit_log(subject=f"inspection:{record.id}")
    assert (entry.action, entry.old_value, entry.new_value) == ("label_added", None, "NG: scratch")
    store.add_label(record.id, "OK")
    assert store.audit_log(subject=f"inspection:{record.id}")[0].old_value == "NG"
    assert store.current_label(record.id).label == "OK"
    assert store.labels_for(record.id)[0] == label


def test_failure_in_the_middle_of_add_label_leaves_neither_label_nor_audit(store, monkeypatch):
    record = store.record_inspection(_inspection())
    audit_before = len(store.audit_log())

    def broken_audit(*args, **kwargs):
        raise RuntimeError("disk unplugged")

    monkeypatch.setattr(store, "_audit", broken_audit)
    with pytest.raises(RuntimeError, match="unplugged"):
        store.add_label(record.id, "NG", note="scratch")
    monkeypatch.undo()
    assert store.labels_for(record.id) == []
    assert store.inspection(record.id).label is None  # the trigger's update was rolled back too
    assert len(store.audit_log()) == audit_before
    store.add_label(record.id, "NG")  # and the store still works
    assert store.inspection(record.id).label == "NG"


def test_label_for_a_missing_inspection_or_a_bad_region_is_refused(store):
    with pytest.raises(StoreError, match="no inspection 99"):
        store.add_label(99, "NG")
    record = store.record_inspection(_inspection())
    with pytest.raises(StoreError, match="PNG"):
        store.add_label(record.id, "NG", region_png=b"GIF89a")
    with pytest.raises(StoreError, match="OK or NG"):
        store.add_label(record.id, "maybe")
    assert store.audit_log() == []


def test_model_version_setting_and_users_are_audited(store):
    anna = store.add_user("Anna", "operator", "hash-1")
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("aNNA", "operator", "hash-2")
    store.add_user("Ärger", "operator", "h")
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("äRGER", "operator", "h")  # case-insensitive beyond ASCII
    v1 = store.add_model_version("m1", "trained", 0.5, user_id=anna.id)
    v2 = store.add_model_version("m1", "threshold 0.600", 0.6, parent_id=v1.id, user_id=anna.id)
    assert store.current_model_version() == v2
    store.set_current_model_version(v1.id, user_id=anna.id, action="rollback")
    assert store.current_model_version() == v1
    assert store.set_setting("k", "v", user_id=None) is True
    assert store.set_setting("k", "v", user_id=None) is False  # unchanged: nothing written
    store.set_role(anna.id, "supervisor", actor_id=None)
    store.set_password_hash(anna.id, "hash-3", actor_id=None)
    store.set_active(anna.id, False, actor_id=None)
    actions = [e.action for e in reversed(store.audit_log())]
    assert actions == ["user_added", "user_added", "model_version_added", "setting_changed", "model_version_added",
                       "setting_changed", "rollback", "setting_changed", "role_changed", "password_changed",
                       "user_deactivated"]
    rollback = store.audit_log(subject="setting:current_model_version")[0]
    assert (rollback.old_value, rollback.new_value) == (str(v2.id), str(v1.id))
    assert all("hash" not in (e.old_value or "") + (e.new_value or "") for e in store.audit_log())
    assert store.user(anna.id).active is False


# --------------------------------------------------------------------------------------------------
# searching


def test_queries_filter_combine_and_page(store):
    version = store.add_model_version("m", "trained", 0.5)
    base = datetime(2024, 5, 3, 12, 0).astimezone()
    records = store.record_inspections([
        _inspection(f"Part_{i:03d}.png", i / 100, "NG" if i >= 50 else ("Review" if i >= 40 else "OK"),
                    at=base + timedelta(days=i % 3), model_version_id=version.id if i % 2 else None)
        for i in range(100)
    ])
    store.add_label(records[60].id, "NG")
    store.add_label(records[10].id, "NG")
    store.add_label(records[10].id, "OK")
    day = base.date()
    assert store.count_inspections() == 100
    assert store.count_inspections(InspectionQuery(date_from=day, date_to=day)) == 34  # i % 3 == 0
    assert store.count_inspections(InspectionQuery(date_from=day + timedelta(days=1))) == 66
    assert store.count_inspections(InspectionQuery(date_to=base + timedelta(days=1))) == 34  # datetime: exclusive
    assert store.count_inspections(InspectionQuery(verdict="NG")) == 50
    assert store.count_inspections(InspectionQuery(verdict="Review")) == 10
    assert store.count_inspections(InspectionQuery(label="NG")) == 1
    assert store.count_inspections(InspectionQuery(label="OK")) == 1
    assert store.count_inspections(InspectionQuery(label="unlabelled")) == 98
    assert store.count_inspections(InspectionQuery(score_min=0.2, score_max=0.29)) == 10
    assert store.count_inspections(InspectionQuery(model_version_id=version.id)) == 50
    assert store.count_inspections(InspectionQuery(name_contains="PART_01")) == 10
    assert store.count_inspections(InspectionQuery(findings=True)) == 61  # NG, Review, or the OK-labelled one
    page = store.query_inspections(InspectionQuery(order="score_desc", limit=5, offset=5))
    assert [r.score for r in page] == [0.94, 0.93, 0.92, 0.91, 0.90]
    counts = store.counts_by_verdict_and_label()
    assert counts[("NG", "NG")] == 1 and counts[("OK", "OK")] == 1 and sum(counts.values()) == 100
    assert sorted(store.labelled_scores()) == [(0.1, "OK"), (0.6, "NG")]
    assert [(d, n) for d, v, lab, n in store.daily_counts() if v == "NG" and lab is None][0][0] == day


def test_query_validation():
    with pytest.raises(ValueError, match="verdict"):
        InspectionQuery(verdict="bad")
    with pytest.raises(ValueError, match="label"):
        InspectionQuery(label="maybe")
    with pytest.raises(ValueError, match="order"):
        InspectionQuery(order="random")


def test_times_round_trip_in_utc(store):
    moment = datetime(2024, 5, 3, 23, 30, 15, 123000, tzinfo=timezone(timedelta(hours=2)))
    record = store.record_inspection(_inspection(at=moment))
    read = store.inspection(record.id)
    assert read.inspected_at == moment and read.inspected_at.tzinfo == UTC
    assert read == record


# --------------------------------------------------------------------------------------------------
# threads


def test_each_thread_has_its_own_connection(store):
    connections, errors = {}, []
    barrier = threading.Barrier(2)

    def work(name):
        try:
            barrier.wait(timeout=5)
            connections[name] = store._connection()
            for i in range(50):
                record = store.record_inspection(_inspection(f"{name}-{i}.png"))
                store.add_label(record.id, "OK")
        except Exception as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert connections["a"] is not connections["b"]
    assert store._connection() not in connections.values()
    assert store.count_inspections() == 100
    assert store.count_inspections(InspectionQuery(label="OK")) == 100
    assert len(store.audit_log()) == 100


# --------------------------------------------------------------------------------------------------
# kill -9

_WRITER = r"""
import random, sys
from anomalyapp.store.records import InspectionRecord, RecordStore

store = RecordStore.open(sys.argv[1])
rng = random.Random(int(sys.argv[2]))
version = store.current_model_version() or store.add_model_version("m", "trained", 0.5)
print("ready", flush=True)
while True:
    if rng.random() < 0.2:
        batch = store.record_inspections(
            [InspectionRecord(f"b{rng.random()}.png", rng.random(), "OK", 0.5, model_version_id=version.id)
             for _ in range(rng.randint(2, 20))])
        print("I " + " ".join(str(r.id) for r in batch), flush=True)
        continue
    record = store.record_inspection(
        InspectionRecord(f"i{rng.random()}.png", rng.random(), "NG", 0.5, model_version_id=version.id))
    print(f"I {record.id}", flush=True)
    label = store.add_label(record.id, rng.choice(["OK", "NG"]), note="x" * rng.randint(0, 500))
    print(f"L {label.id}", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_committed_decisions_survive_kill_9(tmp_path):
    path = tmp_path / "records.sqlite3"
    rng = random.Random(20240503)
    committed = {"I": set(), "L": set()}
    for round_ in range(5):
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(round_)], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready", child.stderr.read().decode()
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        output = child.stdout.read()
        child.stdout.close()
        child.stderr.close()
        for line in output.split(b"\n")[:-1]:  # the last piece may be a half-written line
            kind, *ids = line.decode().split()
            committed[kind].update(map(int, ids))

        conn = _raw(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        present = {row[0] for row in conn.execute("SELECT id FROM inspections")}
        labels = {row[0] for row in conn.execute("SELECT id FROM labels")}
        audited = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'label_added'").fetchone()[0]
        conn.close()
        assert committed["I"] <= present
        assert committed["L"] <= labels
        assert audited == len(labels)  # never a label without its audit entry, nor the reverse
    assert len(committed["I"]) > 20 and len(committed["L"]) > 5
    with RecordStore.open(path) as store:  # and it still opens and migrates cleanly
        assert store.count_inspections() >= len(committed["I"])


def test_date_only_query_uses_local_days(store):
    late = datetime.combine(date(2024, 5, 3), datetime.max.time()).astimezone()
    early = datetime.combine(date(2024, 5, 4), datetime.min.time()).astimezone()
    store.record_inspections([_inspection("late.png", at=late), _inspection("early.png", at=early)])
    (only,) = store.query_inspections(InspectionQuery(date_from=date(2024, 5, 3), date_to=date(2024, 5, 3)))
    assert only.file_name == "late.png"
