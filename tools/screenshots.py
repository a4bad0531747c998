"""Screenshots of the real window for the docs: run under Xvfb (see README), writes docs/screenshots/*.png.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/screenshots.py

It opens the demo project, trains if needed, inspects the demo's test images, selects a defective part,
and grabs the screen (the X server's pixels, not a widget render) at each step.
"""

from __future__ import annotations

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


def shot(name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    QGuiApplication.primaryScreen().grabWindow(0).save(str(OUT / f"{name}.png"))
    print(f"wrote {OUT / name}.png")


def main() -> int:
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
    window.setGeometry(0, 0, 1600, 1000)
    window.show()
    project = projects.demo_project(tmp / "demo-project")
    window.set_project(project)
    window.auto_start()
    wait_for(lambda: window.trainer.running)
    wait(2500)
    shot("training")
    wait_for(lambda: window.results_panel.model().rowCount() >= 36)
    wait(1500)
    model = window.results_panel.model()
    ng = next(i for i in range(model.rowCount()) if model.verdict_at(i) == "NG" and "scratch" in str(model.row_at(i).path))
    window.results_panel.select_source_row(ng)
    wait(2000)
    shot("inspection")
    window.threshold_panel.set_uncertain(0.4)
    wait(1500)
    shot("threshold_uncertain_band")
    window.threshold_panel.set_uncertain(None)
    window.evaluation.evaluate(Path(project.good_folder).parent.parent)
    wait_for(lambda: hasattr(window, "evaluation_dialog"))
    window.evaluation_dialog.move(250, 150)
    wait(2000)
    shot("evaluation")
    window.evaluation_dialog.close()
    window.left_tabs.setCurrentWidget(window.camera_panel)
    wait(800)
    shot("camera_panel")
    window.close()
    app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
