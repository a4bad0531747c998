"""The desktop application: QApplication set-up, error handling, ``--demo`` and ``--self-test``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

log = logging.getLogger("anomalyapp")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="anomalyapp", description="anomalyapp desktop window")
    parser.add_argument("--project", type=Path, help="open this project folder")
    parser.add_argument("--demo", action="store_true", help="open the demo line (trains it first if needed)")
    parser.add_argument("--self-test", action="store_true", help="start, run a synthetic image through a model, exit")
    return parser.parse_args(argv)


def _ensure_streams() -> None:
    """A windowed (no console) packaged build has no stdout/stderr; writes to None would crash."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")


def create_application(argv: list[str] | None = None):
    # The window shares two cores with training and inference threads. Python hands the GIL to the waiting GUI
    # thread after 1 ms instead of 5 ms: each pyqtgraph repaint needs the GIL many times, and at 5 ms per
    # hand-over a busy worker stretched repaints past 100 ms.
    sys.setswitchinterval(0.001)
    # OpenMP threads that finish a parallel region wait for the next one; set before torch starts its pool.
    # Sleeping at once (PASSIVE, used here before) made an autoencoder training 1.2-1.7x slower than in the CLI:
    # it runs thousands of small steps, and waking a sleeping thread for each costs more than the step. The
    # window's threads outnumber the cores, where libgomp cuts its default wait to 100 spins (about a
    # microsecond), so the default is no better. ACTIVE waits 1,000 spins there; GOMP_SPINCOUNT bounds the wait
    # to about a millisecond elsewhere (ACTIVE alone would spin for minutes), and KMP_BLOCKTIME does the same for
    # the LLVM and Intel OpenMP that torch uses on macOS and Windows (ACTIVE alone: spin forever). Measured with
    # tools/bench_gui.py, the window stays as responsive (docs/performance.md). A policy set by the person
    # running the window is left whole.
    if "OMP_WAIT_POLICY" not in os.environ:
        for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "100000"), ("KMP_BLOCKTIME", "1")):
            os.environ.setdefault(name, value)
    # PySide6 before pyqtgraph: pyqtgraph binds to the Qt already imported rather than searching for one.
    from PySide6.QtCore import QCoreApplication  # noqa: I001
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    import pyqtgraph as pg

    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    QCoreApplication.setOrganizationName("anomalyapp")
    QCoreApplication.setApplicationName("anomalyapp")
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    from anomalyapp.core.paths import resources_dir

    icon = resources_dir() / "icons" / "anomalyapp.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    from anomalyapp.gui.workers import cancel_all_and_wait

    app.aboutToQuit.connect(lambda: cancel_all_and_wait(5000))
    return app


def show_starting_splash(app):
    """A small window at once, before the libraries load: on a station's first start after a boot, torch and
    the others are read from disk cold (38 s measured here, against 5 s warm), and a start that shows nothing for
    that long gets clicked again."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPainter, QPalette, QPixmap
    from PySide6.QtWidgets import QSplashScreen

    from anomalyapp import __version__

    palette = app.palette()
    pixmap = QPixmap(420, 110)
    pixmap.fill(palette.color(QPalette.ColorRole.Window))
    painter = QPainter(pixmap)
    painter.setPen(palette.color(QPalette.ColorRole.WindowText))
    font = painter.font()
    font.setPointSize(16)
    painter.setFont(font)
    painter.drawText(pixmap.rect().adjusted(20, 20, -20, -50), Qt.AlignmentFlag.AlignLeft, f"anomalyapp {__version__}")
    painter.end()
    splash = QSplashScreen(pixmap)
    splash.setObjectName("starting_splash")
    splash.show()
    splash.showMessage("  starting: loading the model libraries…", Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
                       palette.color(QPalette.ColorRole.WindowText))
    # The imports that follow hold the GUI thread: the splash is drawn now, once the window system has mapped it
    # (asynchronous under X11; a single processEvents() left it black).
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and not (splash.windowHandle() and splash.windowHandle().isExposed()):
        app.processEvents()
        time.sleep(0.01)
    splash.repaint()
    app.processEvents()
    return splash


def preload_services() -> None:
    """Import the engine and services before the window shows (about 0.35 s).

    Imported on first use instead, they would load inside the first training or inspection, in the GUI
    thread and in the worker at once, holding the GIL long enough to freeze the window for 100 ms and more.
    """
    from anomalyapp.services.warmup import import_engine

    import_engine()
    import anomalyapp.services.camera  # noqa: F401
    import anomalyapp.services.correction  # noqa: F401
    import anomalyapp.services.evaluation  # noqa: F401
    import anomalyapp.services.inference  # noqa: F401
    import anomalyapp.services.training  # noqa: F401


def _install_excepthook(window_getter) -> None:
    """An unexpected error shows a dialog (and the log gets the traceback); the window stays up."""

    def hook(kind, value, tb):
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(kind, value, tb)))
        window = window_getter()
        if window is not None:
            window.show_error("Unexpected error", f"{kind.__name__}: {value}")

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    _ensure_streams()
    args = _parse(list(argv or []))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from anomalyapp import __version__
    from anomalyapp.core.logs import setup_logging

    setup_logging()  # stderr is null in a windowed build: the file keeps worker tracebacks
    log.info("anomalyapp %s window started", __version__)
    app = create_application()
    splash = None if args.self_test else show_starting_splash(app)
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    preload_services()
    if args.self_test:
        return self_test(app)
    from anomalyapp.core.errors import AppError
    from anomalyapp.gui.main_window import MainWindow
    from anomalyapp.services import project as projects

    window = MainWindow()
    _install_excepthook(lambda: window)
    window.show()
    splash.finish(window)  # closes once the window is up
    try:
        if args.project:
            window.open_project(args.project)
        elif args.demo:
            window.set_project(projects.demo_project())
            window.auto_start()
        else:
            recent = projects.recent_projects() if window.app_config.reopen_last_project else []
            if recent:
                window.open_project(recent[0])
            else:
                window.set_project(projects.demo_project())
    except AppError as error:
        window.show_error("Start", str(error))
    return app.exec()


def self_test(app, timeout_s: float = 180.0) -> int:
    """Start the real window, train a small model on a generated line, inspect one of its parts with and without
    a synthetic scratch, exit.

    Prints one line per step; exit code 0 only when both images went through the model, their anomaly map reached
    the window, and the window judged the scratched part NG and the same part without it OK.
    """
    from PySide6.QtCore import QEventLoop, QSettings, QTimer

    from anomalyapp.gui.main_window import MainWindow
    from anomalyapp.services import project as projects
    from anomalyapp.services.demo import SELF_TEST_SIZE, self_test_data

    def say(message: str) -> None:
        print(f"self-test: {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="anomalyapp-selftest-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("ANOMALYAPP_CONFIG_DIR", str(root / "config"))
        settings = QSettings(str(root / "window.ini"), QSettings.Format.IniFormat)
        good_folder, good_probe, scratched_probe = self_test_data(root)
        window = MainWindow(settings)
        window.show()
        project = projects.create_project(root / "project", "self-test", good_folder)
        projects.set_up_single_user(project, "self-test")
        project.training.image_size = SELF_TEST_SIZE
        window.set_project(project)
        outcome: dict = {}
        loop = QEventLoop()

        def finish(key, value):
            outcome[key] = value
            loop.quit()

        window.trainer.failed.connect(lambda message: finish("error", f"training failed: {message}"))
        window.inspection.model_failed.connect(lambda message: finish("error", f"model failed: {message}"))
        window.inspection.model_loaded.connect(lambda manifest: finish("model", manifest))
        QTimer.singleShot(int(timeout_s * 1000), lambda: finish("error", "timed out"))
        started = time.monotonic()
        window.training_panel.image_size.setValue(SELF_TEST_SIZE)
        window.start_training()
        loop.exec()
        if "error" in outcome:
            say(outcome["error"])
            return 1
        say(f"trained and loaded a model in {time.monotonic() - started:.1f} s")

        rows: dict[str, object] = {}

        def scored(row) -> None:
            rows[Path(row.path).name] = row
            if len(rows) == 2:
                finish("rows", rows)

        window.inspection.result_ready.connect(scored)
        window.inspect([str(good_probe), str(scratched_probe)])
        loop.exec()
        if "rows" not in outcome or any(row.score is None for row in rows.values()):
            say(outcome.get("error", "the two synthetic images were not both scored"))
            return 1
        QTimer.singleShot(500, loop.quit)
        loop.exec()
        shown = window.viewer.has_image() if hasattr(window.viewer, "has_image") else True
        results = window.results_panel.model()
        verdicts = {Path(results.row_at(i).path).name: results.verdict_at(i) for i in range(results.rowCount())}
        good, scratched = rows[good_probe.name], rows[scratched_probe.name]
        say(f"a part with a synthetic scratch scored {scratched.score:.3f} ({verdicts.get(scratched_probe.name)}), "
            f"the same part without it {good.score:.3f} ({verdicts.get(good_probe.name)}); map shown: {shown}")
        window.close()
        # The window's layout is written on close; written out here, inside the folder, QSettings has nothing left
        # to write when it is destroyed after the folder is gone (it used to create the folder again, with a
        # window.ini in it, one stray folder in the temp folder per run).
        settings.sync()
        window.deleteLater()
        QTimer.singleShot(0, loop.quit)
        loop.exec()
        passed = shown and verdicts.get(scratched_probe.name) == "NG" and verdicts.get(good_probe.name) == "OK"
        if not passed:
            say("failed: the scratched part must be judged NG, the same part without it OK, and the map shown")
        return 0 if passed else 1
