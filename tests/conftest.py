"""Shared fixtures: isolated app folders, a small demo line, and models trained on it once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True, scope="session")
def _isolated_app_dirs(tmp_path_factory):
    """Point every per-user folder (app data, config, log, torch hub) into a temporary place."""
    root = tmp_path_factory.mktemp("appdirs")
    saved = {k: os.environ.get(k) for k in ("ANOMALYAPP_DATA_DIR", "ANOMALYAPP_CONFIG_DIR", "ANOMALYAPP_LOG_DIR",
                                            "TORCH_HOME")}
    os.environ["ANOMALYAPP_DATA_DIR"] = str(root / "data")
    os.environ["ANOMALYAPP_CONFIG_DIR"] = str(root / "config")
    os.environ["ANOMALYAPP_LOG_DIR"] = str(root / "log")
    os.environ["TORCH_HOME"] = str(root / "torch")
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def demo_line(tmp_path_factory) -> Path:
    """A demo category big enough to train on: 12 good, test 4 good + 4 of each defect, 128 px."""
    from anomalyapp.data.demo import generate_demo

    return generate_demo(
        tmp_path_factory.mktemp("line") / "demo_line", n_train=12, n_test_good=4, n_test_per_defect=4, size=128
    )


@pytest.fixture(scope="session")
def line_with_a_defect_among_good(tmp_path_factory) -> tuple[Path, str]:
    """A demo line of 20 good images and one spotted part copied in among them (as ``0005_<name>``, so that
    it is fitted, not held out); returns the folder and that image's name relative to it."""
    import shutil

    from anomalyapp.data.demo import generate_demo

    data = generate_demo(tmp_path_factory.mktemp("suspect") / "line", n_train=20, n_test_good=1,
                         n_test_per_defect=1, size=128)
    defective = sorted((data / "test" / "spot").iterdir())[0]
    shutil.copy(defective, data / "train" / "good" / ("0005_" + defective.name))
    return data, f"train/good/0005_{defective.name}"


def train_model(data: Path, out: Path, detector: str = "patchcore", **overrides) -> Path:
    from anomalyapp.services.training import TrainRequest, train

    request = TrainRequest(data=data, detector=detector, out=out, image_size=overrides.pop("image_size", 128),
                           device="cpu", **overrides)
    from anomalyapp.core.types import drain

    return drain(train(request)).model_path


@pytest.fixture(scope="session")
def patchcore_model(demo_line, tmp_path_factory) -> Path:
    return train_model(demo_line, tmp_path_factory.mktemp("models") / "patchcore")


@pytest.fixture(scope="session")
def autoencoder_model(demo_line, tmp_path_factory) -> Path:
    return train_model(demo_line, tmp_path_factory.mktemp("models") / "autoencoder", "autoencoder", epochs=8)
