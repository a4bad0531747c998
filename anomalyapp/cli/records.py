"""The records command group: report (CSV and PDF), labels export, records verify, audit and versions, set-aside."""

from __future__ import annotations

import argparse
import calendar
import sys
from datetime import date as date_type
from pathlib import Path

from anomalyapp.cli.common import EXIT_OK, EXIT_TAMPERED, Parser, command_line_user, positive_int
from anomalyapp.core.errors import AppError


def add_parsers(commands) -> None:
    """Add report, labels and records to the command line's subcommands."""
    report = commands.add_parser("report", help="QA report of a project's inspections as CSV and/or PDF")
    report.add_argument("project", type=Path, help="project folder (holds project.json and records.sqlite3)")
    period = report.add_mutually_exclusive_group()
    period.add_argument("--daily", type=_date, metavar="DATE", help="one day: YYYY-MM-DD, today or yesterday")
    period.add_argument("--monthly", type=_month, metavar="YYYY-MM", help="one calendar month, with a line per day")
    _add_record_filters(report)
    report.add_argument("--csv", type=Path, metavar="FILE", help="write the matching inspections as CSV")
    report.add_argument("--pdf", type=Path, metavar="FILE", help="write the report as an A4 PDF")

    labels = commands.add_parser("labels", help="confirmed labels of a project")
    label_commands = labels.add_subparsers(dest="labels_command", metavar="ACTION", parser_class=Parser, required=True)
    export = label_commands.add_parser("export", help="labelled inspections (path, hash, label, note, user, ...) as CSV")
    export.add_argument("project", type=Path, help="project folder")
    export.add_argument("--out", type=Path, required=True, metavar="FILE.csv")
    _add_record_filters(export)

    records = commands.add_parser("records", help="a project's records database")
    records_commands = records.add_subparsers(dest="records_command", metavar="ACTION", parser_class=Parser,
                                              required=True)
    verify = records_commands.add_parser(
        "verify", help="check the records against their hash chain: exit 0 intact, 3 changed outside the app")
    verify.add_argument("project", type=Path, help="project folder")
    audit = records_commands.add_parser(
        "audit", help="who changed what and when (threshold, model versions, labels, users, logins): the newest "
                      "entries, or the whole log as CSV")
    audit.add_argument("project", type=Path, help="project folder")
    audit.add_argument("--last", type=positive_int, default=50, metavar="N", help="how many of the newest entries "
                       "to print (default 50)")
    audit.add_argument("--csv", type=Path, metavar="FILE", help="write the whole audit log as CSV instead")

    versions = records_commands.add_parser(
        "versions", help="the model versions: which is in use, what changed, and the rule (threshold and Review band) "
                         "each was last judged with, which a rollback brings back")
    versions.add_argument("project", type=Path, help="project folder")

    set_aside = commands.add_parser(
        "set-aside", help="move good images that are not good (training names them) out of a project's good "
                          "images, into set_aside/ beside them; audited")
    set_aside.add_argument("project", type=Path, help="project folder")
    set_aside.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="images among the good images")
    set_aside.add_argument("--reason", default="", help="why, for the audit log")


def _date(text: str):
    """YYYY-MM-DD, 'today' or 'yesterday' -> a date (a local calendar day)."""
    import datetime as dt

    word = text.strip().lower()
    if word in ("today", "yesterday"):
        return dt.date.today() - dt.timedelta(days=word == "yesterday")
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date '{text}': use YYYY-MM-DD") from None


def _month(text: str) -> tuple[int, int]:
    import datetime as dt

    try:
        day = dt.date.fromisoformat(text.strip() + "-01")
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid month '{text}': use YYYY-MM") from None
    return day.year, day.month


def _add_record_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", type=_date, metavar="DATE", help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="date_to", type=_date, metavar="DATE", help="last day, included (YYYY-MM-DD)")
    parser.add_argument("--verdict", choices=("OK", "NG", "Review"))
    parser.add_argument("--label", choices=("OK", "NG", "unlabelled", "labelled"))
    parser.add_argument("--model-version", type=positive_int, metavar="ID", help="only this model version")
    parser.add_argument("--name", metavar="TEXT", help="file name contains TEXT (any case)")
    parser.add_argument("--score-min", type=float, metavar="S")
    parser.add_argument("--score-max", type=float, metavar="S")


def _records_query(args):
    from anomalyapp.services.records import InspectionQuery

    if args.date_from and args.date_to and args.date_from > args.date_to:
        raise AppError(f"--from {args.date_from} is after --to {args.date_to}")
    return InspectionQuery(
        date_from=args.date_from, date_to=args.date_to, verdict=args.verdict, label=args.label,
        score_min=args.score_min, score_max=args.score_max, model_version_id=args.model_version,
        name_contains=args.name,
    )


def _open_records(project_root: Path):
    from anomalyapp.services.project import PROJECT_FILE
    from anomalyapp.services.records import RecordsService

    if not (project_root / PROJECT_FILE).is_file():
        raise AppError(f"{project_root} is not an anomalyapp project ({PROJECT_FILE} is missing)")
    return RecordsService(project_root)


def _report(args) -> int:
    from dataclasses import replace

    from anomalyapp.services import reports

    if not args.csv and not args.pdf:
        raise AppError("say where to write the report: --csv FILE and/or --pdf FILE")
    if (args.daily or args.monthly) and (args.date_from or args.date_to):
        raise AppError("use either --daily/--monthly or --from/--to, not both")
    query = _records_query(args)
    with _open_records(args.project) as records:
        if args.daily:
            query = replace(query, date_from=args.daily, date_to=args.daily)
        elif args.monthly:
            year, month = args.monthly
            first = date_type(year, month, 1)
            query = replace(query, date_from=first, date_to=date_type(year, month, calendar.monthrange(year, month)[1]))
        count = records.count(query)
        if args.csv:
            rows = reports.export_inspections(records, query, args.csv)
            print(f"{rows} inspections written to {args.csv}")
        if args.pdf:
            if args.daily:
                data = reports.daily_summary(records, args.daily, query)
            elif args.monthly:
                data = reports.monthly_summary(records, *args.monthly, query)
            else:
                data = reports.build_report(records, query)
            try:
                from anomalyapp.render.pdf_report import write_pdf
            except ImportError as exc:
                raise AppError(f"PDF reports need Qt (PySide6), which is not available: {exc}") from None
            write_pdf(data, args.pdf)
            print(f"report of {count} inspections ({data.period}) written to {args.pdf}")
    return EXIT_OK


def _labels(args) -> int:
    from anomalyapp.services import reports

    query = _records_query(args)
    with _open_records(args.project) as records:
        rows = reports.labels_export(records, query, args.out)
    print(f"{rows} labelled inspections written to {args.out}")
    return EXIT_OK


def _records(args) -> int:
    if args.records_command == "audit":
        return _audit(args)
    if args.records_command == "versions":
        return _versions(args)
    with _open_records(args.project) as records:
        report = records.verify()
    print(f"{report.rows_checked} rows checked against {report.entries} ledger entries; "
          f"newest entry's hash {report.head_sha256 or '(none)'}")
    if report.intact:
        print("records intact: nothing was changed outside anomalyapp")
        return EXIT_OK
    for line in report.problems():
        print(line)
    print(f"anomalyapp records verify: {args.project} was changed outside anomalyapp", file=sys.stderr)
    return EXIT_TAMPERED


def _audit(args) -> int:
    from anomalyapp.services import reports

    with _open_records(args.project) as records:
        if args.csv:
            count = reports.audit_export(records, args.csv)
            print(f"{count} audit entries written to {args.csv}")
            return EXIT_OK
        for _id, at, user, action, subject, about, old, new in reports.audit_lines(records, args.last):
            change = f"  {old} -> {new}" if old else f"  -> {new}" if new else ""
            print(f"{reports.shown_time(at)}  {user or '-'}  {action}  {about or subject}{change}")
    return EXIT_OK


def _versions(args) -> int:
    """The window's Model versions table, from a shell, oldest first."""
    from anomalyapp.core.verdicts import rule_text

    with _open_records(args.project) as records:
        current = records.current_version()
        users = {user.id: user.name for user in records.auth.users()}
        versions = records.versions()
        rules = records.rules_shown(versions)
        for version in versions:
            marker = "*" if current is not None and version.id == current.id else " "
            rule = rule_text(*rules[version.id])
            print(f"{marker} {version.id}  {version.created_at.astimezone():%Y-%m-%d %H:%M}  "
                  f"{users.get(version.user_id, '-')}  {rule}  {version.change} ({version.folder})")
    if not versions:
        print("no model version recorded yet")
    elif current is not None:
        print(f"* in use: version {current.id}")
    return EXIT_OK


def _set_aside(args) -> int:
    """The window's Set aside, from a shell: the records service checks the acting account may train,
    moves each image without overwriting anything, and audits where it went."""
    from anomalyapp.services.project import open_project

    with _open_records(args.project) as records:
        project = open_project(args.project)
        if not project.good_folder:
            raise AppError(f"project {args.project} has no folder of good images yet")
        user = command_line_user(records)
        for image in args.images:
            moved = records.set_aside_good_image(image, project.good_folder, user, reason=args.reason)
            print(f"{image} set aside: {moved}")
    them = "it" if len(args.images) == 1 else "them"
    print(f"train again to learn without {them}: the model in use still holds {them}")
    return EXIT_OK


COMMANDS = {"report": _report, "labels": _labels, "records": _records, "set-aside": _set_aside}
