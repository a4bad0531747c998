"""The real window, driven headless: train, inspect, move the threshold, camera, cancel, self-test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomalyapp.services import project as projects

pytestmark = pytest.mark.gui


def _load(qtbot, window, project):
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=30000):
        window.set_project(project)


def _inspect_test_set(qtbot, window, demo_line) -> int:
    folders = [str(p) for p in sorted((demo_line / "test").iterdir())]
    expected = sum(len(list(Path(f).iterdir())) for f in folders)
    window.inspect(folders)
    qtbot.waitUntil(lambda: window.results_panel.model().rowCount() == expected, timeout=60000)
    qtbot.waitUntil(lambda: not window.inspection._job.running, timeout=10000)
    return expected


def test_train_in_the_window_then_inspect(qtbot, window, tmp_path, demo_line):
    project = projects.create_project(tmp_path / "fresh", "fresh", demo_line / "train" / "good")
    projects.set_up_single_user(project, "tester")
    window.set_project(project)
    window.training_panel.image_size.setValue(96)
    assert "no model" in window.model_label.text()
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=120000):
        qtbot.mouseClick(window.training_panel.train_button, __import__("PySide6.QtCore").QtCore.Qt.MouseButton.LeftButton)
    assert "patchcore" in window.model_label.text()
    reopened = projects.open_project(project.root)
    assert reopened.model_path is not None and (reopened.model_path / "manifest.json").is_file()
    log = window.training_panel.log.toPlainText()
    assert "trained patchcore" in log
    # What a part will cost to inspect with it, measured by the training on this machine, ends the final line.
    assert re.search(r"; inspection about (\d+ ms|[\d,]+\.\d s) a part here", log)
    count = _inspect_test_set(qtbot, window, demo_line)
    counts = window.results_panel.model().counts()
    assert counts["NG"] >= 1 and counts["OK"] >= 1 and sum(counts.values()) == count


def test_threshold_moves_re_judge_every_result_without_the_model(qtbot, window, project_with_model, demo_line):
    _load(qtbot, window, project_with_model)
    # The project started with the model's calibrated Review band; this test moves the threshold alone.
    window.access.records.set_threshold(window.access.user, 0.5, None, reason="no band", project=window.project)
    window.review.show_decision_rule()
    count = _inspect_test_set(qtbot, window, demo_line)
    model = window.results_panel.model()
    before = model.counts()
    assert before["NG"] > 0

    window.inspection.session = None  # re-judging must not need the model
    with qtbot.waitSignal(window.threshold_panel.verdicts_changed, timeout=3000):
        window.threshold_panel.set_threshold(100.0)
    qtbot.waitUntil(lambda: model.counts()["OK"] == count, timeout=3000)
    with qtbot.waitSignal(window.threshold_panel.verdicts_changed, timeout=3000):
        window.threshold_panel.set_threshold(0.0)
    qtbot.waitUntil(lambda: model.counts()["NG"] == count, timeout=3000)
    with qtbot.waitSignal(window.threshold_panel.verdicts_changed, timeout=3000):
        window.threshold_panel.set_threshold(0.5)
    qtbot.waitUntil(lambda: model.counts() == before, timeout=3000)
    with qtbot.waitSignal(window.threshold_panel.verdicts_changed, timeout=3000):
        window.threshold_panel.set_threshold(0.7)
    qtbot.waitUntil(lambda: projects.open_project(project_with_model.root).threshold == pytest.approx(0.7),
                    timeout=3000)  # saved once the threshold comes to rest
    assert window.viewer.threshold_level == pytest.approx(0.7)


def test_selecting_a_result_shows_image_and_map(qtbot, window, project_with_model, demo_line):
    _load(qtbot, window, project_with_model)
    _inspect_test_set(qtbot, window, demo_line)
    window.results_panel.select_source_row(5)
    qtbot.waitUntil(window.viewer.has_image, timeout=10000)
    assert window.viewer.heat_item.image is not None
    window.label_current("OK")
    assert window.results_panel.model().row_at(5).label == "OK"


def test_cancel_training_keeps_the_previous_model(qtbot, window, project_with_model):
    _load(qtbot, window, project_with_model)
    before = sorted(p.name for p in project_with_model.models_dir.iterdir())
    with qtbot.waitSignal(window.trainer.progress, timeout=30000):
        window.start_training()
    with qtbot.waitSignal(window.trainer.finished, timeout=30000) as finished:
        window.cancel_work()
    assert "cancelled" in finished.args[0]
    assert sorted(p.name for p in project_with_model.models_dir.iterdir()) == before
    assert projects.open_project(project_with_model.root).current_model == "trained"
    assert window.training_panel.train_button.isEnabled()


def _write_video(path: Path, frames: int = 30, size: int = 128) -> Path:
    import cv2

    from anomalyapp.data.demo import make_good_image

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (size, size))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(make_good_image(rng, size)[:, :, ::-1])
    writer.release()
    return path


class _UnpluggingCapture:
    """A VideoCapture stand-in: plays a file, 'unplugs' after some frames, then comes back."""

    def __init__(self, path: str, state: dict):
        import cv2

        self.capture = cv2.VideoCapture(path)
        self.state = state
        state["opens"] += 1

    def isOpened(self):
        return self.state["opens"] != 2 and self.capture.isOpened()  # the first reconnect attempt fails

    def read(self):
        self.state["reads"] += 1
        if self.state["reads"] == 10:
            return False, None  # unplugged
        ok, frame = self.capture.read()
        if not ok:  # loop the clip: a camera never ends
            self.capture.set(1, 0)
            ok, frame = self.capture.read()
        return ok, frame

    def release(self):
        self.capture.release()

    def get(self, prop):
        return self.capture.get(prop)

    def set(self, prop, value):
        return True


def test_camera_scores_frames_and_reconnects_after_unplug(qtbot, window, project_with_model, tmp_path, monkeypatch):
    from anomalyapp.services import camera as camera_service

    _load(qtbot, window, project_with_model)
    video = _write_video(tmp_path / "line.avi")
    state = {"opens": 0, "reads": 0}
    window.camera.source_factory = lambda spec, resolution: camera_service.camera_source(
        0, resolution, opener=lambda _spec: _UnpluggingCapture(str(video), state)
    )
    states = []
    window.camera.status_changed.connect(lambda status: states.append(status.state))
    frames = []
    window.camera.frame_shown.connect(frames.append)
    window.camera.start(0, None)
    qtbot.waitUntil(lambda: "lost" in states and len(frames) >= 3 and states[-1] == "live" and
                    states.index("lost") < len(states) - 1, timeout=60000)
    assert "reconnecting" in states
    qtbot.waitUntil(lambda: frames[-1].index > 12, timeout=30000)
    assert frames[-1].prediction is not None
    assert window.viewer.has_image()
    window.camera_panel.capture_button.click()
    qtbot.waitUntil(lambda: project_with_model.captures_dir.is_dir() and any(project_with_model.captures_dir.iterdir()),
                    timeout=5000)
    window.camera.stop()
    qtbot.waitUntil(lambda: not window.camera.running, timeout=10000)
    assert not window.camera_panel.stop_button.isEnabled()


def test_camera_video_file_plays_to_the_end(qtbot, window, project_with_model, tmp_path, demo_line):
    _load(qtbot, window, project_with_model)
    _inspect_test_set(qtbot, window, demo_line)
    window.results_panel.select_source_row(3)
    qtbot.waitUntil(window.viewer.has_image, timeout=10000)
    video = _write_video(tmp_path / "clip.avi", frames=12)
    states = []
    window.camera.status_changed.connect(lambda status: states.append(status.state))
    window.camera.start(str(video), None)
    qtbot.waitUntil(lambda: "ended" in states, timeout=60000)
    qtbot.waitUntil(lambda: not window.camera.running, timeout=10000)
    assert window.camera.last_frame is not None and window.camera.last_frame.prediction is not None
    # the frames took the viewer from the selected result, which is no longer selected: B labels nothing
    assert window.viewer.title_label.text() == f"frame {window.camera.last_frame.index}"
    assert window.results_panel.current_row() is None
    window.label_current("NG")
    assert all(not window.results_panel.model().row_at(i).label for i in range(window.results_panel.model().rowCount()))


def test_a_camera_whose_frames_are_shaped_unlike_the_training_images_stops_and_says_why(
        qtbot, window, project_with_model, tmp_path):
    """Frames of another shape (a camera set to another resolution) would each be judged by a model that never
    saw such a frame: the stream stops at the first, and the dialog and the panel name both shapes."""
    import cv2

    _load(qtbot, window, project_with_model)
    square = cv2.VideoCapture(str(_write_video(tmp_path / "square.avi", frames=4)))
    writer = cv2.VideoWriter(str(tmp_path / "wide.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 15, (256, 128))
    while (frame := square.read()[1]) is not None:
        writer.write(cv2.resize(frame, (256, 128)))
    writer.release()
    window.camera.start(str(tmp_path / "wide.avi"), None)
    qtbot.waitUntil(lambda: not window.camera.running, timeout=30000)
    assert window.last_error.startswith("camera frame: 256 x 128 px (aspect 2.00) is shaped unlike the images the "
                                        "model learned (128 x 128 px)")
    assert window.camera_panel.status_label.text().startswith("stopped: camera frame: 256 x 128 px")
    assert window.camera.last_frame is None  # no frame was judged


def test_errors_show_a_dialog_not_a_traceback(qtbot, window, tmp_path):
    window.open_project(tmp_path / "not-a-project")
    assert "not an anomalyapp project" in window.last_error


def test_self_test_exits_zero_and_leaves_nothing_behind(tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    env = dict(__import__("os").environ, QT_QPA_PLATFORM="offscreen", ANOMALYAPP_CONFIG_DIR=str(tmp_path),
               TMPDIR=str(temp))
    result = subprocess.run([sys.executable, "-m", "anomalyapp", "--self-test"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "synthetic scratch scored" in result.stdout
    assert [path.name for path in temp.iterdir()] == []


def test_false_positive_is_fixed_in_place_without_retraining(qtbot, window, project_with_model, demo_line):
    _load(qtbot, window, project_with_model)
    _inspect_test_set(qtbot, window, demo_line)
    model = window.results_panel.model()
    flagged = next(i for i in range(model.rowCount()) if model.verdict_at(i) == "NG")
    window.results_panel.select_source_row(flagged)
    ng_before = model.counts()["NG"]
    with qtbot.waitSignal(window.inspection.correction_done, timeout=60000):
        window.false_positive_action.trigger()
    assert model.verdict_at(flagged) == "OK" and model.row_at(flagged).label == "OK"
    assert model.counts()["NG"] < ng_before
    project = projects.open_project(project_with_model.root)
    assert project.current_model != "trained" and (project.models_dir / "trained").is_dir()
    assert window.last_correction.gui_seconds < 30
    assert window.last_correction.correction.folder.name == project.current_model


def test_a_start_shows_a_window_at_once_and_closes_it_for_the_main_one(qtbot, window):
    # Before the libraries load (38 s cold here): a start that shows nothing gets clicked again.
    from PySide6.QtWidgets import QApplication

    from anomalyapp.gui.app import show_starting_splash

    splash = show_starting_splash(QApplication.instance())
    qtbot.addWidget(splash)
    assert splash.isVisible() and "starting" in splash.message()
    splash.finish(window)  # what the start does once the window is shown
    qtbot.waitUntil(lambda: not splash.isVisible(), timeout=5000)
