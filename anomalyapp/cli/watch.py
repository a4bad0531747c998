"""The watch command: a station without a screen inspecting every image dropped into a hot folder.

``anomalyapp watch MODEL FOLDER`` runs until Ctrl+C (or SIGTERM), which stops it cleanly after the part in hand
(exit 0); it prints one line per verdict on stdout (``file,score,verdict``) and everything else on stderr.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

from anomalyapp.cli.common import EXIT_OK, command_line_user, positive_int, positive_number
from anomalyapp.core.errors import AppError


def add_parser(commands) -> None:
    watch = commands.add_parser(
        "watch", help="inspect every image dropped into a folder, until Ctrl+C (a station without a screen)")
    watch.add_argument("model", type=Path, help="model folder (the project's model in use)")
    watch.add_argument("folder", type=Path, help="the hot folder the camera software writes into")
    watch.add_argument("--project", type=Path,
                       help="project whose records get the verdicts (default: the project holding MODEL)")
    watch.add_argument("--out", type=Path, help="write each part's overlay PNG into this folder")
    watch.add_argument("--sort", choices=("move", "copy"),
                       help="move or copy each inspected file into OK/, NG/ or Review/ inside FOLDER")
    watch.add_argument("--queue", type=positive_int, default=20, metavar="N",
                       help="files that may wait for the model; beyond, the oldest waiting is dropped (default 20)")
    watch.add_argument("--settle", type=positive_number("seconds"), default=0.5, metavar="SECONDS",
                       help="a file unchanged this long is complete (default 0.5; files renamed in are taken at once)")
    watch.add_argument("--weights", help="backbone weights file, if not where training found it")
    watch.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def _project_of(args) -> Path:
    from anomalyapp.services.project import PROJECT_FILE, project_root_of

    if args.project is not None:
        if not (args.project / PROJECT_FILE).is_file():
            raise AppError(f"{args.project} is not an anomalyapp project ({PROJECT_FILE} is missing)")
        return args.project
    root = project_root_of(args.model)
    if root is None:
        raise AppError(f"watch records every verdict in a project, and model {args.model} is in none: "
                       f"give --project DIR")
    return root


def _check_model_in_use(records, model: Path) -> None:
    """The records name the project's model version in use: watching with another model would misname it."""
    version = records.current_version()
    if version is None:
        return
    in_use = records.root / "models" / version.folder
    if model.resolve() != in_use.resolve():
        raise AppError(f"model {model} is not the project's model in use ({in_use}); the records would name the "
                       f"wrong version: watch with that one")


@contextlib.contextmanager
def _stop_on_signals(token):
    """Ctrl+C and SIGTERM ask the watch to stop after the part in hand; a second Ctrl+C interrupts at once."""
    def stop(signum, frame):
        token.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("stopping after the part in hand…", file=sys.stderr, flush=True)

    saved = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def run(args) -> int:
    from anomalyapp.core.cancel import CancelToken
    from anomalyapp.core.csv_cells import safe_cell
    from anomalyapp.core.types import Progress
    from anomalyapp.services.hot_folder import WatchOutcome, WatchSettings, open_line_link, watch_folder
    from anomalyapp.services.inference import InferenceSession
    from anomalyapp.services.project import open_project
    from anomalyapp.services.records import RecordsService

    root = _project_of(args)
    settings = WatchSettings(args.folder, sort=args.sort, queue_limit=args.queue, overlay_dir=args.out,
                             settle_seconds=args.settle).checked()
    project = open_project(root)
    with RecordsService(root) as records:
        user = command_line_user(records)
        _check_model_in_use(records, args.model)
        session = InferenceSession(args.model, device=args.device, weights=args.weights)
        link = open_line_link(root)
        token = CancelToken()
        try:
            job = watch_folder(session, records, user, settings, token, line=link,
                               project_name=project.name)
            with _stop_on_signals(token):
                try:
                    while True:
                        item = next(job)
                        if isinstance(item, Progress) and item.metrics.get("started"):  # files are seen from now
                            print(f"watching {settings.folder.resolve()} with {args.model.name} ({session.device}); "
                                  f"Ctrl+C stops", file=sys.stderr, flush=True)
                        elif isinstance(item, WatchOutcome):
                            if item.state == "done":
                                print(f"{safe_cell(item.file_name)},{item.score:.6f},{item.verdict}", flush=True)
                            else:
                                print(f"{item.state} {item.file_name}: {item.reason}", file=sys.stderr, flush=True)
                        elif isinstance(item, Progress) and item.stage == "warning":
                            print(f"warning: {item.message}", file=sys.stderr, flush=True)
                except StopIteration as stop:
                    summary = stop.value
        finally:
            if link is not None:
                link.close()
    verdicts = ", ".join(f"{n} {v}" for v, n in summary.by_verdict.items())
    print(f"stopped: {summary.done} inspected ({verdicts}), {summary.skipped} not images, {summary.errors} "
          f"unreadable, {summary.dropped} dropped, {summary.queued} still queued for the next start",
          file=sys.stderr, flush=True)
    return EXIT_OK


COMMANDS = {"watch": run}
