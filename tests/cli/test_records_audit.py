"""`anomalyapp records audit PROJECT`: the newest audit entries, each naming the part a label was given to, or the
whole log as CSV, for a station without the window."""

from __future__ import annotations

import csv

from anomalyapp.cli.main import main
from cli_helpers import assert_clean_error, run_cli
from tests.cli.test_records_verify import project  # noqa: F401


def test_the_newest_entries_say_who_did_what_to_which_part(project, capsys):  # noqa: F811
    assert main(["records", "audit", str(project), "--last", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    # oldest of the three first; the newest is Anna's label, naming the image, not only the record's number
    assert lines[-1].endswith("  Anna  label_added  inspection 8: line/part_07.png  -> NG: scratch")


def test_the_whole_log_as_csv(project, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "audit.csv"
    assert main(["records", "audit", str(project), "--csv", str(out)]) == 0
    with open(out, encoding="utf-8-sig", newline="") as file:
        rows = list(csv.DictReader(file))
    assert f"{len(rows)} audit entries written" in capsys.readouterr().out
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int)  # oldest first
    assert {"user_added", "model_version_added", "label_added"} <= {r["action"] for r in rows}
    label = next(r for r in rows if r["action"] == "label_added")
    assert (label["user"], label["subject"], label["about"], label["new_value"]) == (
        "Anna", "inspection:8", "inspection 8: line/part_07.png", "NG: scratch")


def test_not_a_project_is_a_clean_error(tmp_path):
    assert_clean_error(run_cli("records", "audit", tmp_path / "nowhere"), "nowhere", "not an anomalyapp project")


def test_the_versions_with_the_rule_each_was_last_judged_with(project, capsys):  # noqa: F811
    """`records versions`: which version is in use and the rule a rollback would bring back, from a shell."""
    from argon2 import PasswordHasher

    from anomalyapp.services.records import RecordsService

    (project / "models" / "m2").mkdir()
    with RecordsService(project, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)) as records:
        boss = records.auth.authenticate("Maria", "Supervisor1")
        records.set_threshold(boss, 0.47, 0.42, reason="tuned")
        records.add_version("m2", 1, "trained", boss, uncertain_low=0.3)
    assert main(["records", "versions", str(project)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  1  ") and lines[0].endswith("  Maria  0.470 (review from 0.420)  trained (m1)")
    assert lines[1].startswith("* 2  ") and lines[1].endswith("  Maria  0.500 (review from 0.300)  trained (m2)")
    assert lines[2] == "* in use: version 2"
