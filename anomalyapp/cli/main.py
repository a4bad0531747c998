"""The command-line front end: train, predict, evaluate, bench, demo, report, labels, records, watch, line.

Exit codes: 0 success, 2 bad input or usage (one clear line on stderr, no traceback), 1 unexpected failure,
130 cancelled with Ctrl+C; ``records verify`` exits 3 when the records were changed outside the app; ``line test``
exits 4 when the test verdict did not reach every sink in time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from anomalyapp import __version__
from anomalyapp.cli import line as line_commands
from anomalyapp.cli import records as record_commands
from anomalyapp.cli import watch as watch_command
from anomalyapp.cli.common import EXIT_CANCELLED, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, command_line_user, positive_number
from anomalyapp.cli.common import Parser as _Parser
from anomalyapp.cli.common import positive_int as _positive_int
from anomalyapp.core.config import STAGE_WEIGHTINGS
from anomalyapp.core.errors import AppError
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="anomalyapp",
        description="Offline visual inspection trained on good images only.",
        epilog="Without a command the desktop window opens: anomalyapp [--demo | --project DIR | --self-test].",
    )
    parser.add_argument("--version", action="version", version=f"anomalyapp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser("train", help="learn what a good part looks like from a folder of good images")
    train.add_argument("data", type=Path, help="MVTec category folder (uses train/good) or a folder of good images")
    train.add_argument("--detector", choices=("patchcore", "autoencoder"), default="patchcore")
    train.add_argument("--backbone", choices=("efficientnet_lite0", "resnet18", "resnet50", "wide_resnet50_2"))
    train.add_argument("--weights", help="backbone weights file (state dict), or 'random' for tests and timing")
    train.add_argument("--allow-download", action="store_true", help="let torchvision download ResNet weights")
    train.add_argument("--out", type=Path, help="model folder to write (default: models/<data>-<detector>)")
    train.add_argument("--image-size", type=_positive_int,
                       help="the model input's side in pixels (default 224): its short side when the aspect is kept")
    train.add_argument("--aspect", choices=("auto", "keep", "square"), default="auto",
                       help="keep the images' aspect, or squeeze each into a square; auto (default) keeps it when "
                            "the training images share one shape")
    train.add_argument("--roi", type=_rectangle, action="append", metavar="LEFT,TOP,RIGHT,BOTTOM",
                       help="region of interest: a rectangle as shares of the image (0 to 1); repeat for more. Only "
                            "the region is trained on and scored; the part must sit in the same place every time")
    train.add_argument("--smallest-defect", type=_positive_float, metavar="PX",
                       help="the smallest defect that matters, in image pixels: the image is cut into tiles when "
                            "squeezing it to the image size would shrink such a defect below about 3 pixels")
    train.add_argument("--tile-scale", type=_positive_float, metavar="S",
                       help="cut each image, resized by S (1 = its own pixels), into overlapping tiles of the image "
                            "size; default: from --smallest-defect, else no tiles")
    train.add_argument("--coreset-ratio", type=float, help="PatchCore: share of patches kept (default 0.1)")
    train.add_argument("--max-bank-size", type=_positive_int, help="PatchCore: cap on the memory bank")
    train.add_argument("--index", choices=("auto", "flat", "hnsw", "ivf"), help="PatchCore: nearest-neighbour index")
    train.add_argument("--stage-weighting", choices=STAGE_WEIGHTINGS,
                       help="how the backbone stages weigh in the patch distance (docs/accuracy.md, stage balance); "
                            "default: the detector's")
    train.add_argument("--stages", type=lambda text: tuple(part.strip() for part in text.split(",")),
                       metavar="LAYERS",
                       help="PatchCore: backbone stages the features come from, e.g. layer2,layer3 (faster, verdicts "
                            "that separated worse on the shared sets) or layer3,layer4 (coarser maps; docs/accuracy.md); "
                            "default: layer2,layer3,layer4")
    train.add_argument("--epochs", type=_positive_int, help="autoencoder: training epochs (default 40)")
    train.add_argument("--holdout", type=float, default=0.2,
                       help="share of good images, the last in name order, held out to set the threshold")
    train.add_argument("--false-reject-rate", type=float, default=0.01, metavar="R",
                       help="share of new good parts that may be judged NG; the threshold meets it (default 0.01)")
    train.add_argument("--defects", type=Path, help="optional folder of known defects: also offers the F1-optimal threshold")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--estimate", action="store_true",
                       help="first print the time and peak memory the training will take, measured on a few images")
    _add_pixel_limit(train)

    predict = commands.add_parser("predict", help="score images; writes results.csv and overlays with --out")
    predict.add_argument("model", type=Path, help="model folder")
    predict.add_argument("inputs", nargs="+", type=Path, help="image files or folders (with their subfolders)")
    predict.add_argument("--out", type=Path,
                         help="folder that receives one new run-<time>-<pid> folder of results.csv and overlay PNGs")
    predict.add_argument("--weights", help="backbone weights file, if not where training found it")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    _add_pixel_limit(predict)
    cluster = predict.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="score on the Dask cluster of this scheduler (tcp://host:8786); the images must be "
                              "readable by the workers at the same paths")
    cluster.add_argument("--workers", type=_positive_int, metavar="N",
                         help="score on a Dask cluster of N worker processes started on this machine")

    evaluate = commands.add_parser("evaluate", help="metrics on an MVTec-layout folder (test/, ground_truth/)")
    evaluate.add_argument("model", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("--json", type=Path, help="write the metrics to this JSON file")
    evaluate.add_argument("--threshold", type=float, default=NORMALISED_THRESHOLD, metavar="T",
                          help="working threshold on the normalised scale (default 0.5, the calibrated one)")
    evaluate.add_argument("--csv", type=Path, metavar="FILE", help="write the per-image scores (path,defect_type,score,verdict)")
    evaluate.add_argument("--weights")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    _add_pixel_limit(evaluate)

    bench = commands.add_parser("bench", help="latency, fit time and memory per backbone on this machine")
    bench.add_argument("--json", type=Path, help="write the figures to this JSON file")
    bench.add_argument("--data", type=Path, help="MVTec category or folder of good images (default: the demo)")
    bench.add_argument("--backbones", nargs="+", help="default: every backbone whose weights are present")
    bench.add_argument("--markdown", type=Path, default=Path("docs/benchmarks.md"))
    bench.add_argument("--repeats", type=_positive_int, default=30)
    bench.add_argument("--no-scale", action="store_true", help="skip the 10x-training-patches run")
    bench.add_argument("--no-line-300", action="store_true", help="skip the generated 300-good-image line")

    demo = commands.add_parser("demo", help="generate the demo line, train, evaluate and write overlays")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--detector", choices=("patchcore", "autoencoder"), default="patchcore")

    record_commands.add_parsers(commands)
    line_commands.add_parsers(commands)
    watch_command.add_parser(commands)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _rectangle(text: str) -> tuple[float, float, float, float]:
    """'0.1,0.2,0.9,0.8' -> (left, top, right, bottom), shares of the image's width and height."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' is not LEFT,TOP,RIGHT,BOTTOM with each from 0 to 1")
    if not (values[0] < values[2] and values[1] < values[3]):
        raise argparse.ArgumentTypeError(f"'{text}' must have LEFT < RIGHT and TOP < BOTTOM")
    return values


def _add_pixel_limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=positive_number("megapixels"), metavar="MEGAPIXELS",
                        help="refuse larger images before decoding them (default 100, or ANOMALYAPP_MAX_PIXELS)")


class _ProgressPrinter:
    """Renders Progress with tqdm bars on stderr; one bar per stage, warnings as plain lines.

    Each bar shows its own stage's time left; the whole job's (``core.remaining_time``, as the window computes
    it) follows the message once it is known: from ``estimate`` (``services.training.Estimate``), or from the
    plan the job sends (the autoencoder's, a few epochs into its training).
    """

    def __init__(self, estimate=None, clock=time.monotonic):
        from anomalyapp.core.remaining_time import RemainingTime

        self.bar = None
        self.stage = None
        self.clock = clock
        self.remaining = RemainingTime(None if estimate is None else estimate.seconds, clock(),
                                       () if estimate is None else estimate.stages)

    def whole_job_left(self, progress) -> str:
        """'about 2 min 10 s left in all', or '' while only the running stage's time is known."""
        from anomalyapp.core.remaining_time import describe_seconds

        self.remaining.adopt_plan(progress.plan)
        left = self.remaining.update(progress.stage, progress.step, progress.total, self.clock())
        return f"{describe_seconds(left)} in all" if left is not None and self.remaining.covers_whole_job else ""

    def __call__(self, progress) -> None:
        from tqdm import tqdm

        if progress.stage == "warning":
            tqdm.write(f"warning: {progress.message}", file=sys.stderr)
            return
        if progress.total is None:
            self.close()
            print(progress.message, file=sys.stderr)
            return
        if progress.stage != self.stage:
            self.close()
            self.stage = progress.stage
            self.bar = tqdm(total=progress.total, desc=progress.stage, unit="", leave=False, file=sys.stderr)
        self.bar.n = progress.step
        whole = self.whole_job_left(progress)
        self.bar.set_postfix_str(f"{progress.message}; {whole}" if whole else progress.message, refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.bar, self.stage = None, None


def _drive(job, printer: _ProgressPrinter):
    """Run a generator job to the end, rendering its progress; return its value."""
    from anomalyapp.core.types import Progress

    try:
        while True:
            item = next(job)
            if isinstance(item, Progress):
                printer(item)
    except StopIteration as stop:
        printer.close()
        return stop.value


def _train(args) -> int:
    from anomalyapp.core.config import CalibrationConfig
    from anomalyapp.services.training import TrainRequest, part_time, train

    request = TrainRequest(
        data=args.data,
        detector=args.detector,
        out=args.out,
        backbone=args.backbone,
        weights=args.weights,
        allow_download=args.allow_download,
        image_size=args.image_size,
        keep_aspect={"auto": None, "keep": True, "square": False}[args.aspect],
        roi=tuple(args.roi) if args.roi else None,
        tile_scale=args.tile_scale,
        smallest_defect=args.smallest_defect,
        coreset_ratio=args.coreset_ratio,
        max_bank_size=args.max_bank_size,
        index=args.index,
        stage_weighting=args.stage_weighting,
        layers=args.stages,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        defects=args.defects,
        calibration=CalibrationConfig(holdout_fraction=args.holdout, target_false_reject_rate=args.false_reject_rate),
    )
    if not 0 < args.holdout < 1:
        raise AppError(f"--holdout must be between 0 and 1, not {args.holdout}")
    if not 0 < args.false_reject_rate < 0.5:
        raise AppError(f"--false-reject-rate must be above 0 and below 0.5, not {args.false_reject_rate}")
    if args.estimate:
        from anomalyapp.services.training import estimate

        expected = estimate(request)
        print(f"estimate: {expected.describe()}", flush=True)
        if expected.describe_stages():
            print(f"by stage: {expected.describe_stages()}", flush=True)
    else:
        expected = None
    result = _drive(train(request, actor=_acting_user(request.out)), _ProgressPrinter(expected))
    print(
        f"trained {result.detector} on {result.train_images} images ({result.device}, fit {result.fit_seconds:.1f} s, "
        f"total {result.total_seconds:.1f} s); threshold from {result.calibration_images} held-out good images"
    )
    if result.summary.get("expected_false_rejects"):
        print(f"{result.summary['expected_false_rejects']} (target {args.false_reject_rate:g})")
    if result.summary.get("inspect_seconds"):
        print(f"inspection: about {part_time(result.summary['inspect_seconds'])} a part on this machine")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable image(s)")
    print(f"model: {result.model_path}")
    return EXIT_OK


def _acting_user(path):
    """The project account the command line acts as when ``path`` lies in a project (else None): the one
    named ANOMALYAPP_USER, or the OS login name."""
    from anomalyapp.services.project import project_root_of
    from anomalyapp.services.records import RecordsService

    root = project_root_of(path) if path is not None else None
    if root is None:
        return None
    with RecordsService(root) as records:
        return command_line_user(records)


def _predict(args) -> int:
    from anomalyapp.core.csv_cells import safe_cell
    from anomalyapp.services.inference import ImageResult, InferenceSession, predict_to_folder

    if args.scheduler or args.workers:  # distributed is imported only on this path
        from anomalyapp.services.batch_scoring import predict_with_cluster

        job = predict_with_cluster(args.model, args.inputs, args.out, scheduler=args.scheduler, workers=args.workers,
                                   device=args.device, weights=args.weights)
    else:
        job = predict_to_folder(InferenceSession(args.model, device=args.device, weights=args.weights), args.inputs,
                                args.out)
    printer = _ProgressPrinter()
    show_each = args.out is None
    from anomalyapp.core.types import Progress

    try:
        while True:
            item = next(job)
            if isinstance(item, Progress):
                if not show_each:
                    printer(item)
            elif isinstance(item, ImageResult):
                if not item.ok:
                    printer(Progress("warning", 0, None, f"skipped {item.error}"))
                elif show_each:
                    print(f"{safe_cell(item.path)},{item.prediction.score:.6f},{item.prediction.verdict}")
    except StopIteration as stop:
        printer.close()
        summary = stop.value
    print(f"{summary['images']} images: {summary['OK']} OK, {summary['NG']} NG, {summary['error']} not inspected", file=sys.stderr)
    if summary["out"]:
        print(f"results: {Path(summary['out']) / 'results.csv'} (overlays beside it)")
    if summary["error"] == summary["images"]:
        raise AppError(f"none of the {summary['images']} input images could be inspected (the reasons are above)")
    return EXIT_OK


def _write_json(path: Path, data) -> None:
    from anomalyapp.core.files import write_text_atomically

    write_text_atomically(path, json.dumps(data, indent=2))


def _evaluate(args) -> int:
    from anomalyapp.services.evaluation import evaluate
    from anomalyapp.services.inference import InferenceSession

    session = InferenceSession(args.model, device=args.device, weights=args.weights)
    result = _drive(evaluate(session, args.data, threshold=args.threshold), _ProgressPrinter())
    _print_metrics(result)
    if args.json:
        _write_json(args.json, result)
    if args.csv:
        _write_scores_csv(args.csv, result)
    return EXIT_OK


def _write_scores_csv(path: Path, result: dict) -> None:
    from anomalyapp.services.evaluation import write_scores_csv

    write_scores_csv(path, result)


def _print_metrics(result: dict) -> None:
    def fmt(value):
        return "n/a" if value is None else f"{value:.4f}"

    learnt = result.get("learnt_images") or []
    if learnt:
        hows = {"taught": "taught good since its training", "training": "among its training images"}
        named = "; ".join(f"{Path(entry['path']).name} ({hows.get(entry['how'], entry['how'])})" for entry in learnt[:5])
        print(f"warning: the model learnt from {len(learnt)} of these {result['images']} test images ({named}"
              f"{'; …' if len(learnt) > 5 else ''}): the metrics flatter it; evaluate on images it has not seen")
        unseen = result.get("unseen") or {}
        if unseen:
            print(f"without them ({unseen['images']} images): image AUROC {fmt(unseen['image_auroc'])}, pixel AUROC "
                  f"{fmt(unseen.get('pixel_auroc'))}, AUPRO@0.3 {fmt(unseen.get('aupro'))}, false-reject rate "
                  f"{fmt(unseen['false_reject_rate'])}, recall {fmt(unseen['recall'])}")

    print(
        f"{result['images']} test images ({result['anomalous']} defective): image AUROC {fmt(result['image_auroc'])}, "
        f"pixel AUROC {fmt(result['pixel_auroc'])}, AUPRO@0.3 {fmt(result['aupro'])}, F1-max {fmt(result['f1_max'])}"
    )
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    print(
        f"at the model's threshold: precision {fmt(result['precision'])}, recall {fmt(result['recall'])}, "
        f"accuracy {fmt(result['accuracy'])}, F1 {fmt(result['f1'])}; TN {tn} FP {fp} FN {fn} TP {tp}"
    )
    if "false_reject_rate" in result:
        at = result["recall_at_false_reject_rate"]
        print(
            f"threshold {result['threshold']:g} (raw {result['threshold_raw']:.4g}): false-reject rate "
            f"{fmt(result['false_reject_rate'])}, recall {fmt(result['recall'])}; recall the scores allow at a "
            f"false-reject rate of 1 % {fmt(at['0.01'])}, of 5 % {fmt(at['0.05'])}"
        )
    against = result.get("false_rejects_against_expected")
    if against:
        print(f"good test images judged NG: {against['judged_ng']} of {against['good_images']}; the calibration expected "
              f"{against['expected_low']}-{against['expected_high']} of {against['good_images']} new good parts (90 %): "
              + ("within" if against["within"] else "OUTSIDE: these good parts score unlike the training's"))


def _bench(args) -> int:
    from anomalyapp.services.benchmark import BenchRequest, run_benchmark, write_markdown

    request = BenchRequest(data=args.data, backbones=args.backbones, repeats=args.repeats, scale=not args.no_scale,
                           line_300=not args.no_line_300)
    result = _drive(run_benchmark(request), _ProgressPrinter())
    write_markdown(result, args.markdown, "anomalyapp " + " ".join(args.argv))
    for section, title in (("backbones", ""), ("scaled_10x", " x10 patches"), ("line_300", " 300 good images")):
        for name, figures in result.get(section, {}).items():
            rss = "n/a" if figures["peak_rss_mb"] is None else f"{figures['peak_rss_mb']:.0f} MB"
            print(
                f"{name}{title}: predict {figures['predict_ms']:.1f} ms, floor {figures['floor_ms']:.1f} ms, "
                f"ratio {figures['latency_ratio']:.2f} (to the detector's own stages {figures['ratio_to_backbone']:.2f}, "
                f"with resizing {figures['ratio_to_preprocess_backbone']:.2f}); fit {figures['fit_s']:.1f} s: features "
                f"{figures['features_s']:.1f} s (floor {figures['features_floor_s']:.1f} s), coreset "
                f"{figures['coreset_s']:.1f} s, bank {figures['bank_s']:.1f} s; bank {figures['bank_size']} of "
                f"{figures['training_patches']} patches; peak RSS {rss}"
            )
    if args.json:
        _write_json(args.json, result)
    print(f"written: {args.markdown}")
    return EXIT_OK


def _demo(args) -> int:
    from anomalyapp.services.demo import run_demo

    result = _drive(run_demo(args.out, args.detector), _ProgressPrinter())
    _print_metrics(result["metrics"])
    print(f"model: {result['model']}")
    print(f"overlays and results.csv: {result['predictions']}")
    return EXIT_OK


_COMMANDS = {"train": _train, "predict": _predict, "evaluate": _evaluate, "bench": _bench, "demo": _demo,
             **record_commands.COMMANDS, **watch_command.COMMANDS, **line_commands.COMMANDS}


def configure_process() -> None:
    """Process-wide settings, set once here (and in gui.app) rather than in library code."""
    import cv2

    from anomalyapp.core.logs import setup_logging

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    setup_logging()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure_process()
    if getattr(args, "max_pixels", None) is not None:
        from anomalyapp.services.settings import apply_pixel_limit

        apply_pixel_limit(args.max_pixels)
    logging.getLogger(__name__).info("anomalyapp %s %s", __version__, " ".join(argv))
    try:
        return _COMMANDS[args.command](args)
    except AppError as error:
        print(f"anomalyapp {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"anomalyapp {args.command}: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except MemoryError:
        print(f"anomalyapp {args.command}: error: out of memory; try a smaller --image-size or --max-bank-size", file=sys.stderr)
        return EXIT_FAILURE
