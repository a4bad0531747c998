"""Images per second of `predict --out` run plainly and on a Dask LocalCluster of 1 and 2 worker processes.

    .venv/bin/python tools/bench_cluster.py MODEL IMAGES... [--workers 1 2] [--out DIR]

Each run writes results.csv and the overlays, as the command does. "total" is the whole run as a user waits
for it (for the cluster: starting the workers, shipping and loading the model); "scoring" counts from the
first image written to the last, the rate an archive of many thousand images approaches. The cluster's scores
are checked against the plain run's (largest difference printed).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from anomalyapp.core.types import Progress
from anomalyapp.services.batch_scoring import predict_with_cluster
from anomalyapp.services.device import cpu_name
from anomalyapp.services.inference import ImageResult, InferenceSession, predict_to_folder


def _timed(job) -> tuple[dict, float, float, int]:
    started = time.perf_counter()
    first = last = None
    count = 0
    try:
        while True:
            item = next(job)
            if isinstance(item, ImageResult):
                count += 1
                last = time.perf_counter()
                first = first or last
            elif isinstance(item, Progress) and item.total is None:
                print(f"  {item.message}")
    except StopIteration as stop:
        summary = stop.value
    return summary, time.perf_counter() - started, (last - first) / max(1, count - 1), count


def _scores(run: str) -> dict[str, float]:
    with open(Path(run) / "results.csv", newline="", encoding="utf-8") as file:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(file) if row["score"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="bench-cluster-")))
    args = parser.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    rows = []
    loading = time.perf_counter()
    session = InferenceSession(args.model, device="cpu")
    loading = time.perf_counter() - loading
    summary, total, per_image, count = _timed(predict_to_folder(session, args.images, args.out))
    reference = _scores(summary["out"])
    rows.append(("plain (as `predict`, model load included)", count, loading + total, per_image, 0.0))
    del session
    for workers in args.workers:
        summary, total, per_image, count = _timed(
            predict_with_cluster(args.model, args.images, args.out, workers=workers, device="cpu"))
        scores = _scores(summary["out"])
        difference = max(abs(scores[path] - reference[path]) for path in reference)
        rows.append((f"--workers {workers}", count, total, per_image, difference))
    print("| run | images | total s | images/s overall | images/s scoring | largest score difference |")
    print("|---|---|---|---|---|---|")
    for name, count, total, per_image, difference in rows:
        print(f"| {name} | {count} | {total:.1f} | {count / total:.2f} | {1 / per_image:.2f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
