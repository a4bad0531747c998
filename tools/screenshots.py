"""Screenshots of the real window for the docs: run under Xvfb (see README), writes docs/screenshots/*.png.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/screenshots.py
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python tools/screenshots.py --size 1280x800

With a window manager running (openbox), the window with its frame fills ``--size`` (default 1600x1000); the
shots at the default size are the README's (``training.png``...), the others are named with their size
(``training-1280x800.png``...). It opens the demo project, trains if needed, inspects the demo's test images, selects a defective part,
and grabs the screen (the X server's pixels, not a widget render) at each step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtGui import QGuiApplication

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(condition, timeout_ms: int = 180000) -> None:
    waited = 0
    while not condition() and waited < timeout_ms:
        wait(100)
        waited += 100
    if not condition():
        raise SystemExit("screenshots: timed out")


def shot(name: str, width: int, height: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / (f"{name}.png" if (width, height) == (1600, 1000) else f"{name}-{width}x{height}.png")
    QGuiApplication.primaryScreen().grabWindow(0, 0, 0, width, height).save(str(path))
    print(f"wrote {path}")


def fill(window, width: int, height: int) -> None:
    """Size the window so that it and its frame (title bar, borders) take ``width`` x ``height``."""
    frame, inner = window.frameGeometry(), window.geometry()
    window.move(0, 0)
    window.resize(width - (frame.width() - inner.width()), height - (frame.height() - inner.height()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1600x1000", help="the window's outer size, WIDTHxHEIGHT")
    width, height = (int(n) for n in parser.parse_args(argv).size.lower().split("x"))
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="anomalyapp-shots-"))
    os.environ["ANOMALYAPP_DATA_DIR"] = str(tmp / "data")
    os.environ["ANOMALYAPP_CONFIG_DIR"] = str(tmp / "config")
    from PySide6.QtCore import QSettings

    from anomalyapp.gui.app import create_application
    from anomalyapp.gui.main_window import MainWindow
    from anomalyapp.services import project as projects

    app = create_application()
    window = MainWindow(QSettings(str(tmp / "window.ini"), QSettings.Format.IniFormat))
    window.resize(width, height)
    window.show()
    wait(500)
    fill(window, width, height)
    project = projects.demo_project(tmp / "demo-project")
    window.set_project(project)
    window.auto_start()
    wait_for(lambda: window.trainer.running)
    wait(2500)
    shot("training", width, height)
    wait_for(lambda: window.results_panel.model().rowCount() >= 36)
    wait(1500)
    model = window.results_panel.model()
    ng = next(i for i in range(model.rowCount()) if model.verdict_at(i) == "NG" and "scratch" in str(model.row_at(i).path))
    window.results_panel.select_source_row(ng)
    wait(2000)
    shot("inspection", width, height)
    window.threshold_panel.set_uncertain(0.4)
    wait(1500)
    shot("threshold_uncertain_band", width, height)
    window.threshold_panel.set_uncertain(None)
    window.evaluation.evaluate(Path(project.good_folder).parent.parent)
    wait_for(lambda: hasattr(window, "evaluation_dialog"))
    dialog = window.evaluation_dialog
    dialog.move(max(0, (width - dialog.frameGeometry().width()) // 2),
                max(0, (height - dialog.frameGeometry().height()) // 2))
    wait(2000)
    shot("evaluation", width, height)
    window.evaluation_dialog.close()
    window.left_tabs.setCurrentWidget(window.camera_tab)
    wait(800)
    shot("camera_panel", width, height)
    window.close()
    app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
