"""The hot folder: a station that inspects every image the line's camera software drops into a folder.

``watch_folder`` is a long job like any other (a generator yielding ``Progress`` and one ``WatchOutcome`` per
file, stopped by its ``CancelToken``); the command line (``anomalyapp watch``) and the window run the same code.
For a watch, being stopped is its normal end: it returns a ``WatchSummary`` rather than raising ``Cancelled``.

How a file is taken:

- **Found** by a periodic rescan of the folder (the source of truth: it works on a network share, where change
  notifications are unreliable or missing, and after a restart) and, sooner, by watchdog's observer where the
  platform gives notifications. Only the folder's own files are watched; hidden files and names ending in a
  temporary suffix (``.tmp``, ``.part``...) are a camera's writes in progress and are left alone.
- **Complete** when it appeared by a rename into the folder (the safe way for a writer: write elsewhere, then
  rename), or when its size and modification time stayed the same over two checks ``settle_seconds`` apart.
  A writer that pauses longer than that in the middle of a file must rename instead.
- **Inspected in arrival order**, once: every complete file gets a row in the records' ``watched_files`` table
  (folder, name, size, modification time, state, reason, inspection). The inspection and the row's ``done`` are
  one transaction, so a restart neither scores a file twice nor skips one that arrived while it was down
  (queued files are queued again, files it never saw are new).
- **A bounded queue**: beyond ``queue_limit`` files waiting for the model, the *oldest* waiting one is dropped
  (state ``dropped``, with the reason, counted and reported, the file left where it is). The newest parts are
  kept because the line's reject gate waits for a verdict within a cycle time: the oldest waiting part is the
  one whose verdict is already the latest, most likely past its gate, while a new part can still be judged in
  time.
- **Not an image** (by its name) or **unreadable**: recorded as ``skipped`` or ``error`` with the reason and left
  in place (with ``sort="move"``, an unreadable image goes to ``error/``).
- **A folder that vanishes** (a network share) is reported once ("folder X is not reachable since 10:02:13;
  retrying every 2 s"); watching resumes when it is back, with a rescan.

Each verdict is recorded like any other inspection (source ``watch``), optionally drawn as an overlay into
``overlay_dir``, sorted into ``OK/``, ``NG/``, ``Review/`` (moved or copied; a name already there gets a
suffix, nothing is overwritten) and queued for the line as a ``LineVerdict`` (``line``, the project's
``LineLink``) in the same transaction as its record: a verdict recorded is a verdict that will reach the line.
"""

from __future__ import annotations

import collections
import math
import os
import queue
import shutil
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from anomalyapp.core.cancel import CancelToken
from anomalyapp.core.errors import AppError, DataError
from anomalyapp.core.line import LineVerdict
from anomalyapp.core.types import Progress
from anomalyapp.core.verdicts import Verdict
from anomalyapp.data.images import IMAGE_SUFFIXES, is_image_file

WATCH_SOURCE = "watch"  # the inspections' source in the records
SORT_MODES = ("move", "copy")
ERROR_FOLDER = "error"
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".filepart", ".swp", "~")
_TICK_SECONDS = 0.1  # the longest the loop sleeps between looks when nothing wakes it


@dataclass(frozen=True)
class WatchSettings:
    folder: Path
    sort: str | None = None  # None, "move" or "copy" into OK/, NG/, Review/
    queue_limit: int = 20  # files waiting for the model; beyond, the oldest waiting one is dropped
    overlay_dir: Path | None = None
    settle_seconds: float = 0.5  # a file's size and time unchanged this long: completely written
    rescan_seconds: float = 1.0
    retry_seconds: float = 2.0  # how often an unreachable folder is tried again
    use_observer: bool = True  # watchdog notifications besides the rescans

    def checked(self) -> WatchSettings:
        """These settings, or a ``DataError`` naming the setting and the reason."""
        folder = Path(self.folder)
        if not folder.exists():
            raise DataError(f"watched folder {folder} does not exist")
        if not folder.is_dir():
            raise DataError(f"watched folder {folder} is a file, not a folder")
        if self.sort not in (None, *SORT_MODES):
            raise DataError(f"sorting is 'move' or 'copy', not {self.sort!r}")
        if int(self.queue_limit) < 1:
            raise DataError(f"the queue must hold at least 1 file, not {self.queue_limit}")
        for name in ("settle_seconds", "rescan_seconds", "retry_seconds"):
            if not getattr(self, name) > 0:
                raise DataError(f"{name.replace('_', ' ')} must be above 0, not {getattr(self, name)}")
        if self.overlay_dir is not None:
            overlay_dir = Path(self.overlay_dir)
            if overlay_dir.exists() and not overlay_dir.is_dir():
                raise DataError(f"overlay folder {overlay_dir} is a file, not a folder")
            if overlay_dir.resolve() == folder.resolve():
                raise DataError(f"overlay folder {overlay_dir} is the watched folder: overlays would be inspected")
        return self


@dataclass(frozen=True)
class WatchOutcome:
    """What became of one file: ``state`` done (``verdict`` judged), skipped, dropped or error (``reason``)."""

    file_name: str
    path: Path  # where the file is now (inside OK/, NG/... once sorted)
    state: str
    verdict: str | None = None
    score: float | None = None
    raw_score: float | None = None
    reason: str | None = None
    inspection_id: int | None = None
    overlay: Path | None = None
    line_verdict: LineVerdict | None = None
    seen_at: float = 0.0  # time.time() when the file was first seen in the folder
    finished_at: float = 0.0  # time.time() when its state was recorded (a verdict: recorded and published)
    pixels: object = field(default=None, repr=False, compare=False)  # the image, when the watch keeps pixels


@dataclass
class WatchSummary:
    folder: Path
    done: int = 0
    skipped: int = 0
    dropped: int = 0
    errors: int = 0
    queued: int = 0  # still waiting when the watch stopped (queued again at the next start)
    by_verdict: dict[str, int] = field(default_factory=lambda: {"OK": 0, "NG": 0, "Review": 0})


@dataclass
class _Pending:
    """A file seen but not yet known to be completely written."""

    size: int
    mtime_ns: int
    checked_at: float  # monotonic
    seen_at: float  # wall clock
    renamed: bool = False


def _is_in_progress(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def unique_target(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>-2<suffix>``, ``-3``... when taken: sorting never overwrites."""
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    counter = 1
    while target.exists():
        counter += 1
        target = folder / f"{stem}-{counter}{suffix}"
    return target


class _Hints:
    """watchdog's observer as a source of hints: names that changed, and names renamed into the folder."""

    def __init__(self, folder: Path, wake: threading.Event):
        self.folder, self.wake = folder, wake
        self.names: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()  # (name, renamed in)
        self.observer = None

    def start(self) -> str | None:
        """Start observing; a message when the platform cannot (the rescans then do all the work)."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        hints = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.is_directory:
                    return
                if event.event_type == "moved":
                    hints._hint(event.dest_path, True)
                elif event.event_type in ("created", "modified", "closed"):
                    hints._hint(event.src_path, False)

        try:
            observer = Observer()
            observer.schedule(Handler(), str(self.folder), recursive=False)
            observer.daemon = True
            observer.start()
        except (OSError, RuntimeError) as error:
            return f"no change notifications for {self.folder} ({error}); rescanning instead"
        self.observer = observer
        return None

    def _hint(self, path, renamed: bool) -> None:
        path = Path(os.fsdecode(path))
        if path.parent == self.folder:
            self.names.put((path.name, renamed))
            self.wake.set()

    def drain(self) -> list[tuple[str, bool]]:
        out = []
        while True:
            try:
                out.append(self.names.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        observer, self.observer = self.observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=2)
            except (OSError, RuntimeError):
                pass  # an observer whose folder went away may already have ended


class _FolderWatch:
    """The state of one watch; ``run`` is the generator ``watch_folder`` returns."""

    def __init__(self, session, records, user, settings: WatchSettings, cancel: CancelToken | None,
                 line, project_name: str, model_lock=None,
                 keep_pixels: bool = False, clock=time.monotonic):
        self.keep_pixels = keep_pixels
        self.session, self.records, self.user, self.settings = session, records, user, settings
        self.model_lock = model_lock if model_lock is not None else _NO_LOCK
        self.cancel = cancel or CancelToken()
        self.line, self.project_name, self.clock = line, project_name, clock
        self.folder = Path(settings.folder).resolve()
        self.key = str(self.folder)
        self.store = records.store
        self.summary = WatchSummary(self.folder)
        self.pending: dict[str, _Pending] = {}
        self.waiting: collections.deque = collections.deque()  # (WatchedFile, seen_at), arrival order
        self.known: set[tuple[str, int, int]] = set()
        self.unsorted: list[tuple[str, str]] = []  # (name, verdict): inspected earlier, still to be moved
        self.wake = threading.Event()
        self.hints = _Hints(self.folder, self.wake)
        self.unreachable_since: datetime | None = None
        self.next_scan = 0.0
        self.used_overlay_names: set[str] = set()
        self.model_version = self._model_version()
        self._last_status: tuple | None = None

    def _model_version(self) -> str:
        """What the line is told judged the part: the records' model version in use (its id, as the inspections
        name it), or the model folder's name in a project that has no versions yet."""
        version = self.records.current_version()
        model = getattr(self.session, "model_path", None)
        if version is not None:
            return str(version.id)
        return Path(model).name if model is not None else ""

    # ---------------------------------------------------------------------------------- the loop
    def run(self) -> Generator[Progress | WatchOutcome, None, WatchSummary]:
        for watched in self.store.watched_files(self.key, "queued"):
            self.known.add(watched.key)
            self.waiting.append((watched, watched.seen_at.timestamp()))
        if self.waiting:
            yield self._status(f"{len(self.waiting)} file(s) still queued from the last watch: inspecting them first")
        yield from self._start_hints()
        yield from self._drop_beyond_limit()
        status = self._status(f"watching {self.folder}")
        # From here every new file is seen (the observer runs, the first rescan is next): a front end that says
        # "watching" to a person or a test says it now, not when it created this generator.
        yield replace(status, metrics=status.metrics | {"started": True})
        try:
            while not self.cancel.cancelled:
                now = self.clock()
                self.wake.clear()  # before draining: a hint that comes after it wakes the next wait
                for name, renamed in self.hints.drain():
                    self._hinted(name, renamed, now)
                if now >= self.next_scan:
                    yield from self._scan(now)
                if self.unreachable_since is None:
                    yield from self._settle(now)
                    yield from self._drop_beyond_limit()
                    if self.waiting:
                        yield from self._inspect_next()
                        continue
                status = self._status()
                if status is not None:
                    yield status
                self.wake.wait(_TICK_SECONDS if self.pending or self.unreachable_since is None
                               else min(self.settings.retry_seconds, _TICK_SECONDS * 5))
        finally:
            self.hints.stop()
        self.summary.queued = len(self.waiting)
        return self.summary

    def _start_hints(self):
        if self.settings.use_observer:
            problem = self.hints.start()
            if problem:
                yield Progress("warning", 0, None, problem)

    # --------------------------------------------------------------------------- finding files
    def _hinted(self, name: str, renamed: bool, now: float) -> None:
        if _is_in_progress(name):
            return
        pending = self.pending.get(name)
        if pending is not None:
            pending.renamed = pending.renamed or renamed
            return
        try:
            stat = os.stat(self.folder / name)
        except OSError:
            return  # gone again, or the folder went away: the rescan will tell
        if not self._known((name, stat.st_size, stat.st_mtime_ns)):
            self.pending[name] = _Pending(stat.st_size, stat.st_mtime_ns, now, time.time(), renamed)

    def _known(self, key: tuple[str, int, int]) -> bool:
        """Whether the records have this file already (asked once per file; remembered while it is here)."""
        if key in self.known:
            return True
        found = self.store.watched_file_state(self.key, *key)
        if found is None:
            return False
        self.known.add(key)
        state, verdict = found
        if state == "done" and verdict and self.settings.sort == "move":
            self.unsorted.append((key[0], verdict))  # inspected, but not moved before the watch stopped
        return True

    def _scan(self, now: float):
        """List the folder: new files become pending; a folder that cannot be listed is unreachable."""
        try:
            with os.scandir(self.folder) as entries:
                found = []
                for entry in entries:
                    if _is_in_progress(entry.name) or not entry.is_file():
                        continue
                    stat = entry.stat()
                    found.append((entry.name, stat.st_size, stat.st_mtime_ns))
        except OSError as error:
            self.next_scan = now + self.settings.retry_seconds
            if self.unreachable_since is None:
                self.unreachable_since = datetime.now()
                self.pending.clear()
                self.hints.stop()
                reason = "it is gone" if isinstance(error, FileNotFoundError) else (error.strerror or str(error))
                yield Progress("warning", 0, None, f"folder {self.folder} is not reachable since "
                               f"{self.unreachable_since:%H:%M:%S} ({reason}); retrying every "
                               f"{self.settings.retry_seconds:g} s", self._metrics())
            return
        self.next_scan = now + self.settings.rescan_seconds
        if self.unreachable_since is not None:
            away = (datetime.now() - self.unreachable_since).total_seconds()
            self.unreachable_since = None
            yield Progress("warning", 0, None, f"folder {self.folder} is reachable again after {away:.0f} s; "
                           f"watching resumes", self._metrics())
            yield from self._start_hints()
        # Arrival order within one listing: by modification time, then name.
        for name, size, mtime_ns in sorted(found, key=lambda f: (f[2], f[0])):
            if name not in self.pending and not self._known((name, size, mtime_ns)):
                self.pending[name] = _Pending(size, mtime_ns, now, time.time())
        for name, verdict in self.unsorted:
            _, problem = self._place(self.folder / name, self.folder / verdict, move=True)
            yield Progress("warning", 0, None, problem or f"{name} was inspected ({verdict}) before the watch last "
                           f"stopped, not yet sorted: moved into {verdict}/", self._metrics())
        self.unsorted.clear()
        # Remember only what is still here (files sorted away, deleted): memory follows the folder, not its history.
        self.known &= set(found) | {(w.name, w.size, w.mtime_ns) for w, _ in self.waiting}

    def _settle(self, now: float):
        """Pending files that are completely written become known: queued, or skipped when not images."""
        complete = []
        for name, pending in list(self.pending.items()):
            if not pending.renamed and now - pending.checked_at < self.settings.settle_seconds:
                continue
            try:
                stat = os.stat(self.folder / name)
            except OSError:
                del self.pending[name]  # gone (renamed away, deleted): nothing to inspect
                continue
            same = (stat.st_size, stat.st_mtime_ns) == (pending.size, pending.mtime_ns)
            if (pending.renamed or same) and stat.st_size > 0:
                del self.pending[name]
                complete.append((pending.seen_at, name, stat.st_size, stat.st_mtime_ns))
            else:
                pending.size, pending.mtime_ns, pending.checked_at = stat.st_size, stat.st_mtime_ns, now
                pending.renamed = False
        for seen_at, name, size, mtime_ns in sorted(complete):
            self.known.add((name, size, mtime_ns))
            if not is_image_file(name):
                reason = f"not an image file ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}); left in place"
                watched = self.store.add_watched_file(self.key, name, size, mtime_ns, "skipped", reason)
                self.summary.skipped += 1
                yield WatchOutcome(name, self.folder / name, "skipped", reason=reason, seen_at=seen_at,
                                   finished_at=time.time())
                continue
            watched = self.store.add_watched_file(self.key, name, size, mtime_ns, "queued")
            self.waiting.append((watched, seen_at))

    def _drop_beyond_limit(self):
        while len(self.waiting) > self.settings.queue_limit:
            watched, seen_at = self.waiting.popleft()
            reason = (f"dropped: {self.settings.queue_limit} newer file(s) were waiting for the model (queue full); "
                      f"left in place, not inspected")
            self.store.set_watched_state(watched.id, "dropped", reason)
            self.summary.dropped += 1
            yield WatchOutcome(watched.name, self.folder / watched.name, "dropped", reason=reason, seen_at=seen_at,
                               finished_at=time.time())

    # ------------------------------------------------------------------------------ inspecting
    def _inspect_next(self):
        watched, seen_at = self.waiting.popleft()
        path = self.folder / watched.name
        try:
            stat = os.stat(path)
            changed = (stat.st_size, stat.st_mtime_ns) != (watched.size, watched.mtime_ns)
        except OSError:
            if self._wait_for_share(watched, seen_at):
                return
            changed = True
        if changed:
            yield self._failed(watched, seen_at, "gone or changed before it was inspected", move=False)
            return
        draw_overlay = self.settings.overlay_dir is not None
        with self.model_lock:
            result = self.session.predict_path(path, keep_pixels=draw_overlay or self.keep_pixels)
        if not result.ok:
            # The share can go between the stat and the read: that part waits for it like the rest of the queue.
            if not self._wait_for_share(watched, seen_at):
                yield self._failed(watched, seen_at, result.error.reason, move=True)
            return
        # The overlay first: its path goes out with the verdict, which is queued with the record in one transaction.
        overlay = self._write_overlay(path, result) if draw_overlay else None
        pixels, result.pixels = (result.pixels if self.keep_pixels else None), None
        line_problem = None
        with self.store.transaction():
            [record] = self.records.record_results([result], self.user, source=WATCH_SOURCE)
            self.store.set_watched_state(watched.id, "done", inspection_id=record.id)
            verdict = str(record.verdict)  # the plain text, not the enum, in what goes out
            line_verdict = LineVerdict(
                part_id=Path(watched.name).stem, file_name=watched.name, verdict=verdict,
                score=float(record.score), raw_score=float(record.raw_score), model_version=self.model_version,
                inspected_at=record.inspected_at.isoformat(timespec="milliseconds"),
                overlay=str(overlay) if overlay else None, project=self.project_name)
            line_problem = self._queue_for_line(line_verdict)
        self._wake_line()
        final_path, problem = self._sort(path, verdict)
        problems = [problem] if problem else []
        if line_problem:  # recorded all the same; the person must know the line did not get it
            problems.append(f"{watched.name}: {line_problem}")
        self.summary.done += 1
        self.summary.by_verdict[verdict] = self.summary.by_verdict.get(verdict, 0) + 1
        for text in problems:
            yield Progress("warning", 0, None, text, self._metrics())
        yield WatchOutcome(watched.name, final_path, "done", verdict, float(record.score),
                           float(record.raw_score), None, record.id, overlay, line_verdict, seen_at, time.time(),
                           pixels)
        yield Progress("watch", self.summary.done, None, f"{watched.name}: {verdict}", self._metrics())

    def _wait_for_share(self, watched, seen_at: float) -> bool:
        """When the folder itself is gone (the share went away, not the file), put the part back at the head of the
        queue and rescan at once, which reports the folder unreachable; False when the folder is there."""
        if os.path.isdir(self.folder):
            return False
        self.waiting.appendleft((watched, seen_at))
        self.next_scan = 0.0
        return True

    def _failed(self, watched, seen_at: float, reason: str, move: bool) -> WatchOutcome:
        path = self.folder / watched.name
        if move and self.settings.sort == "move":
            path, problem = self._place(path, self.folder / ERROR_FOLDER, move=True)
            if problem:
                reason = f"{reason}; {problem}"
        # The line hears of it too (verdict Error, no score): the part at the gate was not judged OK.
        line_verdict = LineVerdict(
            part_id=Path(watched.name).stem, file_name=watched.name, verdict=str(Verdict.ERROR), score=math.nan,
            raw_score=math.nan, model_version=self.model_version,
            inspected_at=datetime.now(UTC).isoformat(timespec="milliseconds"), overlay=None,
            project=self.project_name)
        with self.store.transaction():
            self.store.set_watched_state(watched.id, "error", reason)
            problem = self._queue_for_line(line_verdict)
        self._wake_line()
        self.summary.errors += 1
        if problem:
            reason = f"{reason}; {problem}"
        return WatchOutcome(watched.name, path, "error", reason=reason, line_verdict=line_verdict, seen_at=seen_at,
                            finished_at=time.time())

    def _queue_for_line(self, line_verdict: LineVerdict) -> str | None:
        """Queue the verdict for the line inside the caller's transaction; a message when it could not be (the
        records have it all the same: a failed queue must not undo the inspection, so it is caught here)."""
        if self.line is None:
            return None
        try:
            self.line.queue(line_verdict, self.store)
        except AppError as error:
            return f"the verdict {line_verdict.verdict} could not be queued for the line: {error}"
        return None

    def _wake_line(self) -> None:
        if self.line is not None:
            self.line.wake()

    def _write_overlay(self, path: Path, result) -> Path | None:
        from anomalyapp.data.images import save_image
        from anomalyapp.services import rendering

        folder = Path(self.settings.overlay_dir)
        target = unique_target(folder, f"{path.stem}_overlay.png")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_image(target, rendering.overlay(result.pixels, result.prediction.anomaly_map))
        except (OSError, AppError):
            return None
        return target

    def _sort(self, path: Path, verdict: str) -> tuple[Path, str | None]:
        if self.settings.sort is None:
            return path, None
        return self._place(path, self.folder / verdict, move=self.settings.sort == "move")

    @staticmethod
    def _place(path: Path, folder: Path, move: bool) -> tuple[Path, str | None]:
        try:
            folder.mkdir(exist_ok=True)
            target = unique_target(folder, path.name)
            if move:
                os.replace(path, target)  # same folder tree: a rename, never a copy
            else:
                shutil.copy2(path, target)
        except OSError as error:
            return path, f"could not {'move' if move else 'copy'} {path.name} into {folder.name}/: " \
                         f"{error.strerror or error}"
        return target, None

    # -------------------------------------------------------------------------------- status
    def _metrics(self) -> dict:
        return {"folder": str(self.folder), "queued": len(self.waiting), "dropped": self.summary.dropped,
                "done": self.summary.done, "skipped": self.summary.skipped, "errors": self.summary.errors,
                "reachable": self.unreachable_since is None,
                "unreachable_since": (f"{self.unreachable_since:%H:%M:%S}" if self.unreachable_since else None)}

    def _status(self, message: str | None = None) -> Progress | None:
        """A status Progress when something shown changed (or with a message); else None."""
        metrics = self._metrics()
        state = (metrics["queued"], metrics["dropped"], metrics["reachable"])
        if message is None and state == self._last_status:
            return None
        self._last_status = state
        return Progress("watch", self.summary.done, None, message or describe_status(metrics), metrics)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NO_LOCK = _NoLock()


def describe_status(metrics: dict) -> str:
    """'watching /line/in: 3 queued, 0 dropped, 120 done' (or the folder's absence)."""
    if not metrics.get("reachable", True):
        return f"folder {metrics['folder']} is not reachable since {metrics['unreachable_since']}; retrying"
    return (f"watching {metrics['folder']}: {metrics['queued']} queued, {metrics['dropped']} dropped, "
            f"{metrics['done']} inspected")


def open_line_link(project_root: str | os.PathLike):
    """The project's link to the line with its saved settings (``services.line_link.LineLink``), a watch's
    ``line`` (with no sink configured it queues nothing). The caller closes it."""
    from anomalyapp.services.line_link import LineLink

    return LineLink.open(project_root)


def describe_link(states) -> str:
    """'line: mqtt connected, backlog 0; webhook not connected, backlog 3 (timed out)' from ``LineLink.state()``."""
    parts = []
    for state in states or ():
        text = f"{state.name} {'connected' if state.connected else 'not connected'}, backlog {state.backlog}"
        if state.last_error and not state.connected:
            text += f" ({state.last_error})"
        parts.append(text)
    return ("line: " + "; ".join(parts)) if parts else ""


def watch_folder(session, records, user, settings: WatchSettings, cancel: CancelToken | None = None,
                 line=None, project_name: str = "",
                 model_lock=None, keep_pixels: bool = False) -> Generator[Progress | WatchOutcome, None, WatchSummary]:
    """Watch ``settings.folder`` until ``cancel`` is set, inspecting each new image with ``session`` (an
    ``InferenceSession``) and recording it in ``records`` (a ``RecordsService``) as ``user``.

    Yields a ``WatchOutcome`` per file and ``Progress`` (stage "watch": status with ``metrics`` folder, queued,
    dropped, done, reachable; stage "warning": something a person should read). Returns a ``WatchSummary``
    once cancelled. Settings are checked first (``DataError`` naming the problem). ``model_lock``: held while
    the model scores (the window shares its loaded model between jobs); ``keep_pixels``: each verdict's outcome
    carries the image (for a thumbnail). ``line``: the project's ``LineLink`` (or None); each verdict is queued
    for it in the transaction that records it.
    """
    from anomalyapp.services import auth

    settings = settings.checked()
    if user is None:
        raise AppError("watching a folder records inspections: log in first")
    records.auth.require(user, auth.INSPECT)
    return (yield from _FolderWatch(session, records, user, settings, cancel, line, project_name,
                                    model_lock, keep_pixels).run())
