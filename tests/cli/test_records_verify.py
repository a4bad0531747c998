"""`anomalyapp records verify PROJECT`: 0 intact, 3 changed outside the app (each change named), 2 bad input."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from anomalyapp.cli.main import main
from anomalyapp.services.project import create_project
from anomalyapp.services.records import InspectionRecord, RecordsService
from cli_helpers import assert_clean_error, run_cli


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "line"
    create_project(root, "Washer line 2")
    (root / "models" / "m1").mkdir(parents=True)
    with RecordsService(root, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        anna = records.auth.add_user(boss, "Anna", "Operator1", "operator")
        version = records.add_version("m1", None, "trained", boss)
        saved = records.store.record_inspections([
            InspectionRecord(f"/line/part_{i:02d}.png", i / 10, "NG" if i >= 5 else "OK", 0.5,
                             model_version_id=version.id, user_id=anna.id) for i in range(10)])
        records.label(saved[7].id, "NG", "scratch", None, anna)
    return root


def _tamper(root: Path) -> dict:
    """The edits of the issue, as made with a plain SQLite tool (its triggers dropped first)."""
    conn = sqlite3.connect(root / "records.sqlite3", isolation_level=None)
    anna = conn.execute("SELECT id FROM users WHERE name = 'Anna'").fetchone()[0]
    audit = conn.execute("SELECT id FROM audit_log WHERE action = 'label_added'").fetchone()[0]
    ng = conn.execute("SELECT id FROM inspections WHERE verdict = 'NG' ORDER BY id LIMIT 1").fetchone()[0]
    for trigger in ("users_ledger_update", "audit_log_no_delete", "inspections_ledger_update"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("UPDATE users SET role = 'supervisor' WHERE id = ?", (anna,))
    conn.execute("DELETE FROM audit_log WHERE id = ?", (audit,))
    conn.execute("UPDATE inspections SET verdict = 'OK' WHERE id = ?", (ng,))
    conn.close()
    return {"anna": anna, "audit": audit, "ng": ng}


def test_intact_records_exit_0_and_print_the_chain_head(project, capsys):
    assert main(["records", "verify", str(project)]) == 0
    out = capsys.readouterr().out
    assert "records intact" in out
    assert "newest entry's hash " in out and "rows checked against" in out


def test_each_change_made_outside_the_app_is_named_and_exits_3(project, capsys):
    edits = _tamper(project)
    assert main(["records", "verify", str(project)]) == 3
    captured = capsys.readouterr()
    assert f"edited outside the app: users {edits['anna']}, inspections {edits['ng']}" in captured.out
    assert f"deleted outside the app: audit_log {edits['audit']}" in captured.out
    assert "trigger(s) dropped: audit_log_no_delete, inspections_ledger_update, users_ledger_update" in captured.out
    assert "records intact" not in captured.out
    assert captured.err.strip().splitlines() == [
        f"anomalyapp records verify: {project} was changed outside anomalyapp"]


def test_exit_codes_as_a_user_sees_them(project, tmp_path):
    result = run_cli("records", "verify", project)
    assert result.returncode == 0, result.stderr
    _tamper(project)
    result = run_cli("records", "verify", project)
    assert result.returncode == 3 and "users" in result.stdout and "Traceback" not in result.stderr
    assert_clean_error(run_cli("records", "verify", tmp_path / "nowhere"), "nowhere", "not an anomalyapp project")
    assert run_cli("records").returncode == 2


def test_set_aside_from_the_command_line_moves_the_image_for_an_account_that_may_train(tmp_path, monkeypatch):
    good = tmp_path / "washers" / "train" / "good"
    good.mkdir(parents=True)
    (good / "003.png").write_bytes(b"a part with a white blob")
    root = tmp_path / "line"
    create_project(root, "Washer line 2", good)
    with RecordsService(root, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        records.auth.add_user(boss, "Anna", "Operator1", "operator")

    monkeypatch.setenv("ANOMALYAPP_USER", "Anna")
    assert_clean_error(run_cli("set-aside", root, good / "003.png"), "operator", "may not")
    assert (good / "003.png").is_file()
    monkeypatch.setenv("ANOMALYAPP_USER", "Maria")
    result = run_cli("set-aside", root, good / "003.png", "--reason", "white blob")
    assert result.returncode == 0, result.stderr
    moved = tmp_path / "washers" / "set_aside" / "003.png"
    assert f"set aside: {moved}" in result.stdout and moved.read_bytes() == b"a part with a white blob"
    assert "train again to learn without it" in result.stdout
    with RecordsService(root) as records:
        entry = records.audit_log(subject=str(good / "003.png"))[0]
    assert entry.action == "good_image_set_aside" and entry.new_value == f"{moved} (white blob)"
    assert_clean_error(run_cli("set-aside", root, good / "003.png"), "not a file")
