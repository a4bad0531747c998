from pathlib import Path

import pytest

from anomalyapp.data.demo import generate_demo


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """A small demo category shared by tests that only read it."""
    folder = tmp_path_factory.mktemp("demo") / "washers"
    return generate_demo(folder, n_train=5, n_test_good=3, n_test_per_defect=2, size=96)
