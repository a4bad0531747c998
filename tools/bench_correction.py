"""Latency of the false-positive fix in the real window, from the key press to updated verdicts.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/bench_correction.py DATA [--model MODEL_DIR]

DATA is an MVTec category (e.g. the bottle images); without --model a PatchCore model is trained on its
train/good first. The window inspects every test image, then the most confident NG part that is labelled
good in the ground truth, or else the lowest-scoring NG part, is marked a false positive (F2). Printed:
time until the flagged results show their new verdicts, until every listed result is re-scored, and the
ratio to the 3 s goal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="anomalyapp-benchfix-"))
    os.environ["ANOMALYAPP_CONFIG_DIR"] = str(tmp / "config")
    from PySide6.QtCore import QCoreApplication, QSettings

    from anomalyapp.gui.app import create_application
    from anomalyapp.gui.main_window import MainWindow
    from anomalyapp.services import project as projects
    from anomalyapp.services.training import TrainRequest, train

    project = projects.create_project(tmp / "project", "bench", args.data / "train" / "good")
    projects.set_up_single_user(project, "bench")
    from anomalyapp.services.records import RecordsService

    with RecordsService(project.root) as records:
        station_user = records.auth.auto_login()
    if args.model is None:
        job = train(TrainRequest(data=args.data, out=project.models_dir / "v1", device="cpu"), actor=station_user)
        for _ in job:
            pass
    else:
        shutil.copytree(args.model, project.models_dir / "v1")
    project.current_model = "v1"
    project.save()

    app = create_application()
    window = MainWindow(QSettings(str(tmp / "w.ini"), QSettings.Format.IniFormat))
    window.show()
    loaded = []
    window.inspection.model_loaded.connect(loaded.append)
    window.set_project(project)

    def wait_for(condition):
        while not condition():
            QCoreApplication.processEvents()
            time.sleep(0.001)

    wait_for(lambda: loaded)
    folders = [str(p) for p in sorted((args.data / "test").iterdir())]
    expected = sum(len(list(Path(f).iterdir())) for f in folders)
    window.inspect(folders)
    wait_for(lambda: window.results_panel.model().rowCount() >= expected and not window.inspection._job.running)
    model = window.results_panel.model()
    ng = [i for i in range(model.rowCount()) if model.verdict_at(i) == "NG"]
    good_ng = [i for i in ng if "/good/" in str(model.row_at(i).path)]
    target = good_ng[0] if good_ng else min(ng, key=lambda i: model.row_at(i).score)
    window.results_panel.select_source_row(target)
    done = []
    window.inspection.correction_done.connect(done.append)
    window.false_positive_action.trigger()
    wait_for(lambda: done)
    figures = window.last_correction
    bank = window.inspection.session.detector.bank.size
    print(f"{expected} listed results, bank {bank} patches; marked {model.row_at(target).path.name} "
          f"(verdict now {model.verdict_at(target)})")
    print(f"learned and saved a new version: {figures.learned_after:.2f} s")
    print(f"flagged results updated: {figures.first_update_s:.2f} s (goal 3 s, ratio {figures.first_update_s / 3:.2f})")
    print(f"every listed result re-scored: {figures.gui_seconds:.2f} s (ratio {figures.gui_seconds / 3:.2f})")
    window.close()
    app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
