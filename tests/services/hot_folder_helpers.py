"""A project with a quickly trained model, and a watch running in a thread that a test drives as the line would."""

from __future__ import annotations

import getpass
import itertools
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from anomalyapp.core.cancel import CancelToken
from anomalyapp.core.types import Progress
from anomalyapp.services import project as projects


def train_random_model(demo_line: Path, out: Path) -> Path:
    """A PatchCore model on random backbone weights at 64 px: seconds to train, milliseconds per image."""
    from anomalyapp.core.types import drain
    from anomalyapp.services.training import TrainRequest, train

    request = TrainRequest(data=demo_line, out=out, weights="random", image_size=64, device="cpu")
    return drain(train(request)).model_path


def make_project(root: Path, model: Path, demo_line: Path):
    project = projects.create_project(root, "line 3", demo_line / "train" / "good", single_user=getpass.getuser())
    shutil.copytree(model, project.models_dir / "trained")
    project.current_model = "trained"
    project.save()
    return project


def part_png(demo_line: Path, index: int = 0) -> bytes:
    """The bytes of one of the demo line's images, as a camera would write them."""
    images = sorted((demo_line / "test" / "good").glob("*.png")) + sorted((demo_line / "train" / "good").glob("*.png"))
    return images[index % len(images)].read_bytes()


def random_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


class RunningWatch:
    """``watch_folder`` driven in a thread; what it yields is collected for the test to look at."""

    def __init__(self, project, settings, *, slow_after: int | None = None, **kwargs):
        from anomalyapp.services.hot_folder import watch_folder
        from anomalyapp.services.inference import InferenceSession
        from anomalyapp.services.records import RecordsService

        self.records = RecordsService(project.root)
        self.session = InferenceSession(project.model_path, device="cpu")
        user = self.records.auth.local_user(getpass.getuser())
        self.token = CancelToken()
        self.items: list = []
        self.summary = None
        self.error: BaseException | None = None
        if slow_after is not None:
            # A station slower than the parts: after ``slow_after`` inspections each one waits until the test
            # stops the watch, so that parts are still queued then on a CPU of any speed.
            predict, calls = self.session.predict_path, itertools.count(1)

            def slow_predict(*args, **options):
                if next(calls) > slow_after:
                    deadline = time.monotonic() + 30
                    while not self.token.cancelled and time.monotonic() < deadline:
                        time.sleep(0.01)
                return predict(*args, **options)

            self.session.predict_path = slow_predict
        self._job = watch_folder(self.session, self.records, user, settings, self.token, project_name="line 3",
                                 **kwargs)
        self._thread = threading.Thread(target=self._drive, daemon=True)
        self._thread.start()

    def _drive(self) -> None:
        try:
            while True:
                self.items.append(next(self._job))
        except StopIteration as stop:
            self.summary = stop.value
        except BaseException as error:  # noqa: BLE001 - handed to the test
            self.error = error

    @property
    def outcomes(self):
        from anomalyapp.services.hot_folder import WatchOutcome

        return [item for item in list(self.items) if isinstance(item, WatchOutcome)]

    def messages(self, stage: str = "warning") -> list[str]:
        return [item.message for item in list(self.items) if isinstance(item, Progress) and item.stage == stage]

    def wait_for(self, condition, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.error is not None:
                raise self.error
            assert self._thread.is_alive(), "the watch ended early"
            assert time.monotonic() < deadline, f"timed out; outcomes so far: {self.outcomes}"
            time.sleep(0.05)

    def stop(self):
        self.token.cancel()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        self.records.close()
        if self.error is not None:
            raise self.error
        return self.summary
