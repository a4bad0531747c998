"""Reports from the command line (CSV, labels CSV, PDF) and the PDF layout itself."""

from __future__ import annotations

import csv
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher

from anomalyapp.cli.main import main
from anomalyapp.data.images import save_image
from anomalyapp.services.project import create_project
from anomalyapp.services.records import InspectionQuery, InspectionRecord, RecordsService, verdict_for
from anomalyapp.services.reports import build_report, daily_summary, monthly_summary
from cli_helpers import assert_clean_error, run_cli

DAY = date(2024, 5, 3)




@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project with 40 inspections over three days of May 2024, some labelled, some with image files."""
    root = tmp_path_factory.mktemp("reports") / "line"
    create_project(root, "Washer line 2")
    (root / "models" / "m1").mkdir(parents=True)
    images = root / "captures"
    images.mkdir()
    rng = np.random.default_rng(0)
    with RecordsService(root, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        anna = records.auth.add_user(boss, "Anna", "Operator1", "operator")
        version = records.add_version("m1", None, "trained", boss)
        rows = []
        for i in range(40):
            path = images / f"part_{i:03d}.png"
            if i % 4:  # every fourth image file is missing: the report shows a placeholder
                shape = (120, 160, 3) if i % 3 else (90, 90)
                save_image(path, (rng.random(shape) * 255).astype(np.uint8))
            score = float(0.9 - i * 0.02)
            at = datetime.combine(DAY + timedelta(days=i % 3), datetime.min.time()).astimezone() + timedelta(hours=8, minutes=i)
            rows.append(InspectionRecord(str(path), score, verdict_for(score, 0.5, 0.45), 0.5, at, raw_score=score * 3,
                                         model_version_id=version.id, user_id=anna.id))
        saved = records.store.record_inspections(rows)
        for record in saved[:12]:
            records.label(record.id, "NG" if record.score > 0.7 else "OK", "=cmd|' /C calc'!A0" if record.id == 1 else "",
                          None, anna)
    return root


def _csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


def test_report_csv_with_filters(project, tmp_path, capsys):
    out = tmp_path / "sub" / "report.csv"
    assert main(["report", str(project), "--from", "2024-05-04", "--to", "2024-05-05", "--verdict", "NG",
                 "--csv", str(out)]) == 0
    rows = _csv(out)
    assert rows and all(row["verdict"] == "NG" for row in rows)
    assert {row["inspected_at"][:10] for row in rows} <= {"2024-05-04", "2024-05-05"}
    assert rows[0]["model_folder"] == "m1" and rows[0]["user"] == "Anna"
    assert f"{len(rows)} inspections written" in capsys.readouterr().out
    assert not list(out.parent.glob(".*.tmp"))  # the temporary file was renamed into place


def test_labels_export(project, tmp_path):
    out = tmp_path / "labels.csv"
    assert main(["labels", "export", str(project), "--out", str(out)]) == 0
    rows = _csv(out)
    assert len(rows) == 12
    assert set(rows[0]) >= {"image_path", "content_sha256", "label", "note", "labelled_by", "labelled_at", "score",
                            "verdict", "model_version_id"}
    assert {row["labelled_by"] for row in rows} == {"Anna"}
    assert rows[0]["note"].startswith("'=")  # a note a spreadsheet would run is defused
    assert main(["labels", "export", str(project), "--out", str(out), "--label", "NG", "--name", "PART_00"]) == 0
    assert all(row["label"] == "NG" for row in _csv(out))


def test_report_pdf_from_the_command_line(project, tmp_path):
    out = tmp_path / "monthly.pdf"
    result = run_cli("report", project, "--monthly", "2024-05", "--pdf", out, "--csv", tmp_path / "monthly.csv")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) >= 2
    assert len(_csv(tmp_path / "monthly.csv")) == 40


def test_report_errors_exit_2_with_one_line(project, tmp_path):
    assert_clean_error(run_cli("report", tmp_path / "missing", "--pdf", tmp_path / "x.pdf"),
                       "missing", "not an anomalyapp project")
    assert_clean_error(run_cli("report", project, "--from", "03/05/2024", "--csv", tmp_path / "x.csv"),
                       "invalid date '03/05/2024'", "YYYY-MM-DD")
    assert_clean_error(run_cli("report", project, "--monthly", "May", "--csv", tmp_path / "x.csv"), "YYYY-MM")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_clean_error(run_cli("report", project, "--daily", "2024-05-03", "--pdf", blocker / "r.pdf"),
                       "cannot write", "not a folder")
    assert_clean_error(run_cli("labels", "export", project, "--out", blocker / "l.csv"), "cannot write")


def test_report_errors_in_process(project, tmp_path, capsys):
    assert main(["report", str(project)]) == 2
    assert "--csv FILE and/or --pdf FILE" in capsys.readouterr().err
    assert main(["report", str(project), "--daily", "2024-05-03", "--from", "2024-05-01", "--csv", "x.csv"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["report", str(project), "--from", "2024-05-05", "--to", "2024-05-01", "--csv", "x.csv"]) == 2
    assert "is after" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the report data and its PDF


def test_report_data(project):
    with RecordsService(project) as records:
        day = daily_summary(records, DAY)
        month = monthly_summary(records, 2024, 5)
        ng_only = build_report(records, InspectionQuery(verdict="NG"), max_rows=5, max_thumbnails=3)
    assert day.project == "Washer line 2" and day.summary.total == 14
    assert len(month.days) == 31 and sum(d.total for d in month.days) == 40
    assert month.days[2].day == DAY and month.days[2].total == 14
    assert month.summary.labelled == 12
    assert ng_only.rows_title == "Inspections" and len(ng_only.rows) == 5 and ng_only.rows_total > 5
    # the legend names the rule the listed parts were judged with, not only the version's recorded threshold
    assert ng_only.versions[1] == "v1 · m1 · judged with 0.500"
    assert len(ng_only.thumbnails) == 3 and ng_only.thumbnails[0].score == max(r.score for r in ng_only.rows)
    assert {t.pixels is None for t in month.thumbnails} == {True, False}  # missing files and real ones
    assert all(t.pixels is None or max(t.pixels.shape[:2]) <= 240 for t in month.thumbnails)


def test_pdf_layout_with_overlays(project, tmp_path, qapp):
    from anomalyapp.render.pdf_report import render_pdf, write_pdf

    calls = []

    def overlay(path):
        calls.append(path)
        return np.full((60, 80, 3), 200, np.uint8) if path.endswith("1.png") else None

    with RecordsService(project) as records:
        report = monthly_summary(records, 2024, 5, render_overlay=overlay)
    assert calls and any(t.overlay for t in report.thumbnails)
    data = render_pdf(report)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    assert data.startswith(b"%PDF") and pages >= 3  # summary, findings, images
    target = write_pdf(report, tmp_path / "r.pdf")
    assert target.read_bytes()[:4] == b"%PDF"


def test_a_narrow_file_column_keeps_the_file_name_that_tells_parts_apart(qapp):
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QPdfWriter

    from anomalyapp.render.pdf_report import DPI, MARGIN_MM, MM, PAGE_W_MM, _Fitter, _font_family

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(DPI)
    fit = _Fitter(_font_family(), writer, body_w=(PAGE_W_MM - 2 * MARGIN_MM) * MM)  # an A4 report's body
    assert fit.path("defect/kos05_Part5.jpg", 25) == "defect/kos05_Part5.jpg"  # the findings' column holds it
    # less room: the folder gives way first, from its start, and the names of two parts stay apart
    narrow = [fit.path(f"a_rather_long_folder_name/kos0{i}_Part5.jpg", 25) for i in (5, 6)]
    assert narrow[0].endswith("/kos05_Part5.jpg") and narrow[1].endswith("/kos06_Part5.jpg")
    assert narrow[0].startswith("…") and narrow[0] != narrow[1]
    # no room for the name either: it is cut in its middle, keeping both ends
    tight = fit.path("a_long_folder_name/kos05_Part5_of_the_commutator_line.jpg", 12)
    assert "/" not in tight and tight.startswith("kos") and tight.endswith(".jpg") and "…" in tight


def test_a_part_inspected_twice_is_pictured_once_and_listed_twice(tmp_path):
    root = tmp_path / "line"
    create_project(root, "Line")
    at = datetime.combine(DAY, datetime.min.time()).astimezone()
    with RecordsService(root, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        records.store.record_inspections([
            InspectionRecord(str(root / "crack.png"), 0.9, "NG", 0.5, at, content_sha256="aa", user_id=boss.id),
            InspectionRecord(str(root / "crack.png"), 0.9, "NG", 0.5, at + timedelta(minutes=1), content_sha256="aa",
                             user_id=boss.id),
            InspectionRecord(str(root / "dent.png"), 0.8, "NG", 0.5, at, content_sha256="bb", user_id=boss.id),
            # the same name with other content is another part (the line reuses file names)
            InspectionRecord(str(root / "dent.png"), 0.7, "NG", 0.5, at, content_sha256="cc", user_id=boss.id),
        ])
        report = build_report(records, InspectionQuery(), heat_maps=False)
    assert len(report.rows) == 4
    assert [t.file_name for t in report.thumbnails] == ["line/crack.png", "line/dent.png", "line/dent.png"]
    assert [t.score for t in report.thumbnails] == [0.9, 0.8, 0.7]


def test_the_report_names_each_rule_a_versions_parts_were_judged_with(tmp_path):
    """The threshold moved while version 1 was in use: its parts were judged with two rules, and the PDF says so."""
    root = tmp_path / "line"
    create_project(root, "Line")
    (root / "models" / "m1").mkdir(parents=True)
    at = datetime.combine(DAY, datetime.min.time()).astimezone()
    with RecordsService(root, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        version = records.add_version("m1", None, "trained", boss)
        records.store.record_inspections([
            InspectionRecord(str(root / "a.png"), 0.52, "NG", 0.5, at, model_version_id=version.id, user_id=boss.id),
            InspectionRecord(str(root / "b.png"), 0.52, "Review", 0.55, at, uncertain_low=0.45,
                             model_version_id=version.id, user_id=boss.id),
        ])
        report = build_report(records, InspectionQuery(), heat_maps=False)
    assert report.versions[version.id] == "v1 · m1 · judged with 0.500 or 0.550 (review from 0.450)"
