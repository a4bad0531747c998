"""Background jobs always end: every outcome reaches the window, and a job is no longer running after it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def _job_raising(error: BaseException):
    from anomalyapp.core.types import Progress

    def make(token):
        yield Progress("work", 1, 2, "half way")
        raise error

    return make


def test_a_runtime_error_in_the_job_is_reported_and_the_job_ends(qtbot):
    # superqt takes a RuntimeError for a deleted worker and would report nothing; torch raises them often.
    from anomalyapp.gui.workers import start_job

    failures, ended = [], []
    job = start_job("scoring", _job_raising(RuntimeError("shape mismatch in the bank")), failed=failures.append,
                    ended=lambda: ended.append(True))
    qtbot.waitUntil(lambda: bool(ended), timeout=10000)
    assert not job.running
    assert failures and "RuntimeError: shape mismatch in the bank" in failures[0]


def test_an_app_error_is_reported_as_its_message(qtbot):
    from anomalyapp.core.errors import DataError
    from anomalyapp.gui.workers import start_job

    failures, ended = [], []
    job = start_job("training", _job_raising(DataError("folder /x has no images")), failed=failures.append,
                    ended=lambda: ended.append(True))
    qtbot.waitUntil(lambda: bool(ended), timeout=10000)
    assert not job.running and failures == ["folder /x has no images"]
