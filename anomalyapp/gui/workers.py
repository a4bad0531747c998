"""Running service generators off the GUI thread.

Every background job in the window is a services generator driven by a superqt ``GeneratorWorker``: its
``Progress`` items arrive as ``progress``, anything else it yields as ``item``, its return value as
``succeeded``. Cancel sets the job's ``CancelToken``; the generator raises ``Cancelled`` at its next check
and the job reports ``cancelled``. Signals are connected before the worker starts, and every running job is
kept referenced here until it ends, so none is collected mid-run.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Generator

from PySide6.QtCore import QObject, QTimer, Signal
from superqt.utils import GeneratorWorker, WorkerBase

from anomalyapp.core.cancel import Cancelled, CancelToken
from anomalyapp.core.errors import AppError
from anomalyapp.core.types import Progress

log = logging.getLogger(__name__)
_RUNNING: set[Job] = set()


class JobRuntimeError(Exception):
    """A job's own RuntimeError (torch raises many), carried under another type.

    superqt's worker takes any RuntimeError for "the worker object was deleted": it then emits neither
    ``errored`` nor ``finished``, so the job would never end and its failure would never be shown.
    """


class Job(QObject):
    progress = Signal(object)  # Progress
    item = Signal(object)  # anything else the generator yields
    succeeded = Signal(object)  # the generator's return value
    failed = Signal(str)  # a message for the user: names the thing and the reason
    cancelled = Signal()
    ended = Signal()  # after any of the three outcomes

    def __init__(self, name: str, make_generator: Callable[[CancelToken], Generator], parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.token = CancelToken()
        self._make_generator = make_generator
        self._worker: GeneratorWorker | None = None
        self._outcome_sent = False

    def start(self) -> Job:
        def run():
            _lower_thread_priority()
            try:
                return (yield from self._make_generator(self.token))
            except RuntimeError as error:
                raise JobRuntimeError(error) from error

        worker = GeneratorWorker(run)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        _RUNNING.add(self)
        # Start once the event loop has finished the click that asked for the job: the slot's own work
        # then runs before the worker competes with it for the GIL.
        QTimer.singleShot(0, worker.start)
        return self

    @property
    def running(self) -> bool:
        """Until the worker's thread has ended (its ``ended`` signal): one job at a time per controller."""
        return self in _RUNNING

    @property
    def outcome_delivered(self) -> bool:
        """Whether succeeded, failed or cancelled has been emitted. The thread ends a moment later (``ended``):
        a controller that reports its own end on the outcome is no longer running from then on."""
        return self._outcome_sent

    def cancel(self) -> None:
        self.token.cancel()

    def _on_yielded(self, value) -> None:
        (self.progress if isinstance(value, Progress) else self.item).emit(value)

    def _on_returned(self, value) -> None:
        self._outcome_sent = True
        self.succeeded.emit(value)

    def _on_errored(self, error: BaseException) -> None:
        self._outcome_sent = True
        if isinstance(error, JobRuntimeError) and error.__cause__ is not None:
            error = error.__cause__
        if isinstance(error, Cancelled):
            self.cancelled.emit()
        elif isinstance(error, AppError):
            self.failed.emit(str(error))
        elif isinstance(error, MemoryError):
            self.failed.emit(f"{self.name}: out of memory; try a smaller image size or bank size")
        else:
            log.error("%s failed:\n%s", self.name, "".join(traceback.format_exception(error)))
            self.failed.emit(f"{self.name} failed unexpectedly: {error.__class__.__name__}: {error}")

    def _on_finished(self) -> None:
        if not self._outcome_sent and self.token.cancelled:
            self._outcome_sent = True
            self.cancelled.emit()  # quit before the generator ran
        _RUNNING.discard(self)
        self.ended.emit()


def _lower_thread_priority() -> None:
    """Let the GUI thread win the CPU over background work (Linux: a per-thread nice value).

    On two cores a busy worker and its math threads otherwise delay the GUI thread's turn at the GIL, and the
    window freezes for 100 ms at a time. Threads the worker starts (torch's OpenMP pool) inherit the value.
    """
    import os
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: only responsiveness suffers


def start_job(name: str, make_generator: Callable[[CancelToken], Generator], parent: QObject | None = None, **slots) -> Job:
    """Create a job, connect ``slots`` (progress=, item=, succeeded=, failed=, cancelled=, ended=), start it."""
    job = Job(name, make_generator, parent)
    for signal_name, slot in slots.items():
        getattr(job, signal_name).connect(slot)
    return job.start()


def cancel_all_and_wait(timeout_ms: int = 5000) -> None:
    """On quit: ask every job to stop, then give the threads a bounded time to finish."""
    for job in list(_RUNNING):
        job.cancel()
    WorkerBase.await_workers(msecs=timeout_ms)
