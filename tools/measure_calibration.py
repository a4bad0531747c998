"""Measure the calibrated threshold on the shared real sets: trains both detectors, evaluates, prints the table.

    .venv/bin/python tools/measure_calibration.py [--data ../shared/data/real] [--out runs/calibration]
    .venv/bin/python tools/measure_calibration.py --rows-from-json A.json B.json ...   # rows of saved evaluations
    .venv/bin/python tools/measure_calibration.py --rows-from-json A.json ... --recalibrate  # under today's rule

The figures on the test images are measurement only: nothing here feeds back into the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomalyapp.services.evaluation import false_reject_metrics  # noqa: E402

SETS = {"bottle": "mvtec_ad/bottle", "KolektorSDD": "kolektorsdd/commutator", "magnetic tile": "magnetic_tile/magnetic_tile"}


def clopper_pearson(rejected: int, good: int, level: float = 0.90) -> tuple[float, float]:
    """Exact binomial interval of a measured false-reject rate: ``rejected`` of ``good`` images."""
    from scipy.stats import beta

    tail = (1.0 - level) / 2.0
    low = 0.0 if rejected == 0 else float(beta.ppf(tail, rejected, good - rejected + 1))
    high = 1.0 if rejected == good else float(beta.ppf(1.0 - tail, rejected + 1, good - rejected))
    return low, high


def row_of(result: dict) -> dict:
    """Figures of one evaluation, recomputed from its per-image scores (so older JSON files give them too)."""
    rows = result["per_image"]
    labels = np.array([r["defect_type"] != "good" for r in rows])
    scores = np.array([r["score"] for r in rows], dtype=np.float64)
    figures = false_reject_metrics(labels, scores, result.get("threshold", 0.5))
    expected = result.get("expected_false_reject_rate")
    good = int((~labels).sum())
    # The measured rate is itself uncertain (0 of 20 is compatible with up to 14 %): its exact 90 % interval.
    measured = clopper_pearson(int(round(figures["false_reject_rate"] * good)), good)
    return {
        "good": good,
        "frr": figures["false_reject_rate"],
        "recall": figures["recall"],
        "recall_same": figures["recall_at_reached_false_reject_rate"],
        "recall_5": figures["recall_at_false_reject_rate"]["0.05"],
        "auroc": result.get("image_auroc"),
        "expected": expected,
        "bracketed": None if expected is None else bool(expected[1] <= figures["false_reject_rate"] <= expected[2]),
        "measured_interval": measured,
        "overlaps": None if expected is None else bool(measured[0] <= expected[2] and expected[1] <= measured[1]),
        "against": result.get("false_rejects_against_expected") or against_expected(result, labels, scores),
    }


def against_expected(result: dict, labels, scores) -> dict | None:
    """The good images' false rejects against the count the model's calibration expected of that many new good
    parts (``services.evaluation.false_rejects_against_expected``), for JSON files written before it existed."""
    from anomalyapp.engine.calibration import Calibration
    from anomalyapp.services.evaluation import false_rejects_against_expected

    manifest = Path(result["model"]) / "manifest.json"
    if not manifest.exists():
        return None
    calibration = Calibration.from_dict(json.loads(manifest.read_text(encoding="utf-8"))["calibration"])
    return false_rejects_against_expected(calibration, labels, scores, result.get("threshold", 0.5))


def recalibrated(result: dict) -> dict:
    """The saved evaluation as today's calibration rule would have given it: the threshold computed again from
    the evidence in the model's manifest (its unseen good scores, which training computes before any rule is
    applied), each image's normalised score rescaled to it. Exact: a normalised score is 0.5 * raw / threshold."""
    from anomalyapp.engine.calibration import calibrate
    from anomalyapp.services.evaluation import false_rejects_against_expected

    stored = json.loads((Path(result["model"]) / "manifest.json").read_text(encoding="utf-8"))["calibration"]
    fresh = calibrate(stored["good_scores"], stored["good_map_maxima"], source=stored["source"],
                      target_false_reject_rate=stored["target_false_reject_rate"], evidence=stored.get("evidence"))
    factor = stored["image_threshold"] / fresh.image_threshold
    again = dict(result, per_image=[dict(row, score=row["score"] * factor) for row in result["per_image"]])
    again["expected_false_reject_rate"] = fresh.expected_false_rejects(0.5)
    rows = again["per_image"]
    again["false_rejects_against_expected"] = false_rejects_against_expected(
        fresh, np.array([r["defect_type"] != "good" for r in rows]), np.array([r["score"] for r in rows]), 0.5)
    again["rule"] = fresh.rule
    return again


def markdown(table: list[tuple[str, str, dict]]) -> str:
    lines = [
        "| data | detector | good test images | false-reject rate | recall at the threshold | recall the same scores "
        "give at that rate | recall at 5 % | image AUROC | expected false-reject rate (90 % interval) | bracketed | "
        "measured rate's 90 % interval (Clopper-Pearson) | intervals overlap | good judged NG, expected of that many "
        "new good parts (90 %) | within |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for data, detector, r in table:
        expected = "n/a (old rule)" if r["expected"] is None else (
            f"{100 * r['expected'][0]:.1f} % ({100 * r['expected'][1]:.1f}-{100 * r['expected'][2]:.1f} %)")
        bracketed = "" if r["bracketed"] is None else ("yes" if r["bracketed"] else "no")
        overlaps = "" if r["overlaps"] is None else ("yes" if r["overlaps"] else "no")
        low, high = r["measured_interval"]
        against = r["against"]
        counted = "n/a | " if against is None else (
            f"{against['judged_ng']} of {against['good_images']}, expected {against['expected_low']}-"
            f"{against['expected_high']} | {'yes' if against['within'] else 'no'}")
        lines.append(
            f"| {data} | {detector} | {r['good']} | {r['frr']:.3f} | {r['recall']:.3f} | {r['recall_same']:.3f} | "
            f"{r['recall_5']:.3f} | {r['auroc']:.3f} | {expected} | {bracketed} | {100 * low:.1f}-{100 * high:.1f} % | "
            f"{overlaps} | {counted} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "calibration")
    parser.add_argument("--detectors", nargs="+", default=["patchcore", "autoencoder"])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS), metavar="SET",
                        help=f"which of {', '.join(SETS)} (default: all)")
    parser.add_argument("--rows-from-json", nargs="+", type=Path, metavar="JSON")
    parser.add_argument("--recalibrate", action="store_true",
                        help="with --rows-from-json: the threshold as today's rule sets it from the model's evidence")
    parser.add_argument("--stages", help="PatchCore's backbone stages, as anomalyapp train --stages takes them")
    args = parser.parse_args()
    table = []
    if args.rows_from_json:
        for path in args.rows_from_json:
            result = json.loads(path.read_text())
            if args.recalibrate:
                result = recalibrated(result)
                print(f"{path.stem}: {result['rule']}", file=sys.stderr)
            table.append((Path(result["data"]).name, path.stem, row_of(result)))
        print(markdown(table))
        return 0

    from anomalyapp.services.evaluation import evaluate
    from anomalyapp.services.inference import InferenceSession
    from anomalyapp.services.training import TrainRequest, train

    def drive(job):
        try:
            while True:
                next(job)
        except StopIteration as stop:
            return stop.value

    layers = tuple(args.stages.split(",")) if args.stages else None
    for detector in args.detectors:
        for name, folder in ((name, SETS[name]) for name in args.sets):
            model = args.out / f"{Path(folder).name}-{detector}"
            trained = drive(train(TrainRequest(data=args.data / folder, detector=detector, out=model, device="cpu",
                                             layers=layers if detector == "patchcore" else None)))
            result = drive(evaluate(InferenceSession(model, device="cpu"), args.data / folder))
            (args.out / f"{Path(folder).name}-{detector}.json").write_text(json.dumps(result, indent=1))
            table.append((name, detector, row_of(result)))
            print(f"{name} {detector}: fit {trained.fit_seconds:.1f} s, total {trained.total_seconds:.1f} s, "
                  f"{trained.summary.get('expected_false_rejects')}", file=sys.stderr, flush=True)
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
