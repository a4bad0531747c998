"""Time the records database on a realistic load: 100,000 inspections over 90 days.

    .venv/bin/python tools/bench_records.py [--inspections 100000] [--keep DIR]

Fills a temporary project (about 5 % NG, 2 % Review, labels on most NG and Review and on 1 % of the OK
parts, four model versions) and times the searches the review screen and the reports make. Each figure is
the median of several runs after one warm-up, in milliseconds, with its ratio to the 2 s goal (smaller is
better; 1.0 would be exactly the goal).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomalyapp.services.records import RecordsService, verdict_for  # noqa: E402
from anomalyapp.services.reports import build_report, monthly_summary  # noqa: E402
from anomalyapp.store.records import InspectionQuery, InspectionRecord, RecordStore  # noqa: E402

GOAL_MS = 2000.0


def fill(root: Path, count: int, seed: int = 0) -> tuple[float, float, date]:
    """Write ``count`` inspections; return (seconds for inspections, seconds for labels, last day)."""
    rng = random.Random(seed)
    store = RecordStore.for_project(root)
    user = store.add_user("bench", "supervisor", "not a real hash")
    versions = []
    for k in range(4):
        versions.append(store.add_model_version(f"2024010{k + 1}-patchcore", "trained" if k == 0 else f"threshold 0.5{k}",
                                                0.5 + k / 100, parent_id=versions[-1].id if versions else None,
                                                user_id=user.id))
    last_day = date(2024, 6, 30)
    start = datetime.combine(last_day - timedelta(days=89), datetime.min.time()).astimezone()
    records = []
    for i in range(count):
        at = start + timedelta(seconds=rng.uniform(0, 90 * 86400))
        roll = rng.random()
        score = rng.uniform(0.52, 1.4) if roll < 0.05 else rng.uniform(0.45, 0.5) if roll < 0.07 else rng.betavariate(2, 6) * 0.9
        version = versions[min(3, int((at - start).days / 22.5))]
        camera = rng.choice(("cam1", "cam2"))
        records.append(InspectionRecord(
            image_path=f"D:/line2/{camera}/{at:%Y%m%d}/{camera}_{at:%Y%m%d_%H%M%S}_{i:06d}.png",
            score=score, raw_score=score * 4.2, verdict=verdict_for(score, version.threshold, 0.45),
            threshold=version.threshold, uncertain_low=0.45, inspected_at=at,
            content_sha256=f"{rng.getrandbits(256):064x}", model_version_id=version.id, source="camera",
            user_id=user.id,
        ))
    started = time.perf_counter()
    saved = []
    for chunk in range(0, len(records), 5000):
        saved += store.record_inspections(records[chunk:chunk + 5000])
    t_inspections = time.perf_counter() - started
    started = time.perf_counter()
    with store.transaction():
        for record in saved:
            if (record.verdict != "OK" and rng.random() < 0.8) or rng.random() < 0.01:
                truth = "NG" if record.score >= 0.6 or (record.score >= 0.5 and rng.random() < 0.5) else "OK"
                store.add_label(record.id, truth, note="scratch" if truth == "NG" else "", user_id=user.id)
    t_labels = time.perf_counter() - started
    store.close()
    return t_inspections, t_labels, last_day


def timed(fn, repeats: int = 5) -> tuple[float, object]:
    fn()  # warm-up: the first run also reads the pages from disk into the cache
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inspections", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build the project here and keep it")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "bench-project"
        root.mkdir(parents=True, exist_ok=True)
        t_ins, t_lab, last = fill(root, args.inspections)
        size_mb = sum(p.stat().st_size for p in root.glob("records.sqlite3*")) / 1e6
        print(f"filled {args.inspections:,} inspections in {t_ins:.2f} s "
              f"({args.inspections / t_ins:,.0f}/s, batches of 5,000); labels in {t_lab:.2f} s; db {size_mb:.1f} MB")

        started = time.perf_counter()
        records = RecordsService(root)
        open_ms = (time.perf_counter() - started) * 1000
        store = records.store
        week = InspectionQuery(date_from=last - timedelta(days=6), date_to=last)
        page = dict(limit=200, order="newest")
        cases = [
            ("date range (7 days) + verdict NG, page of 200",
             lambda: store.query_inspections(replace(week, verdict="NG", **page))),
            ("date range (7 days) + verdict NG, count",
             lambda: store.count_inspections(replace(week, verdict="NG"))),
            ("file-name substring '_0123', all matches",
             lambda: store.query_inspections(InspectionQuery(name_contains="_0123"))),
            ("file-name substring + verdict, page of 200",
             lambda: store.query_inspections(InspectionQuery(name_contains="cam2_2024061", verdict="NG", **page))),
            ("score 0.4-0.6 + label NG, all matches",
             lambda: store.query_inspections(InspectionQuery(score_min=0.4, score_max=0.6, label="NG"))),
            ("unlabelled NG (review queue), page of 200",
             lambda: store.query_inspections(InspectionQuery(verdict="NG", label="unlabelled", **page))),
            ("model version 3, page of 200 + count",
             lambda: (store.query_inspections(InspectionQuery(model_version_id=3, **page)),
                      store.count_inspections(InspectionQuery(model_version_id=3)))),
            ("all 90 days, newest page of 200", lambda: store.query_inspections(InspectionQuery(**page))),
            ("all 90 days, page 400 (offset 80,000)",
             lambda: store.query_inspections(InspectionQuery(limit=200, offset=80_000))),
            ("summary (counts by verdict x label), 90 days", lambda: records.summary()),
            ("summary, one month", lambda: records.summary(InspectionQuery(date_from=date(2024, 6, 1), date_to=last))),
            ("counts per day, 90 days", lambda: store.daily_counts()),
            ("threshold from labels (F1-optimal)", lambda: records.threshold_from_labels()),
            ("monthly report data (no image files)", lambda: monthly_summary(records, 2024, 6)),
            ("report data, whole period", lambda: build_report(records, InspectionQuery())),
        ]
        print(f"{'open (migrations + quick_check)':<50} {open_ms:9.1f} ms  ratio {open_ms / GOAL_MS:.4f}")
        for name, full in (("verify the records, quick (at open)", False), ("verify the records, full (hash chain)", True)):
            started = time.perf_counter()
            report = store.verify_ledger(full=full)
            verify_ms = (time.perf_counter() - started) * 1000
            print(f"{name:<50} {verify_ms:9.1f} ms  {'intact' if report.intact else 'NOT INTACT'}, "
                  f"{report.entries:,} ledger entries, {report.rows_checked:,} rows")
        worst = 0.0
        for name, fn in cases:
            ms, result = timed(fn)
            worst = max(worst, ms)
            n = len(result) if isinstance(result, list) else ""
            print(f"{name:<50} {ms:9.2f} ms  ratio {ms / GOAL_MS:.4f}  {f'({n} rows)' if n != '' else ''}")
        print(f"slowest query {worst:.1f} ms = {worst / GOAL_MS:.3f} of the 2 s goal")
        records.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
