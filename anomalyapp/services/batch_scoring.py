"""Re-scoring a batch of images on a Dask ``distributed`` cluster: an archive after a model change.

The client reads the model folder once (the files its detector has, checked by the project's loader first)
and broadcasts it to every worker. Each worker writes it into its own local directory, loads it with the
same loader (which checks the manifest's integrity digest and every data file's sha256 there again) and
keeps that one ``InferenceSession`` for every chunk of images it is given. Images are read where they are:
the workers open the paths themselves (a shared folder), and a path a worker cannot read comes back as an
error row naming the path and the reason, as in a plain run. Overlays are encoded on the worker and come
back as PNG bytes, so only the client writes into the run folder.

Results come back as chunks complete and are written in input order through the plain run's ``RunOutput``
(the same ``results.csv`` rows, the same overlay names). At most a few chunks per worker thread are in flight
ahead of the first unwritten one, so neither the cluster nor the client holds the whole archive. When a worker
dies, the scheduler gives its chunks to another worker (Dask re-runs the tasks of a lost worker); when every
worker holding the model has died, the model is sent again and the chunks that needed it resubmitted. Every
image is still written once.

``distributed`` is imported here only, inside the functions: the window and the plain commands never load it.
Dask's messages between client, scheduler and workers are pickled: run the cluster on the plant's own network.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path

from anomalyapp import __version__
from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.errors import AppError, ImageReadError, ImageRefused
from anomalyapp.core.files import write_atomically
from anomalyapp.core.types import Prediction, Progress
from anomalyapp.services.inference import (
    ImageResult,
    InferenceSession,
    RunOutput,
    expand_inputs,
    overlay_png,
    run_folder,
)

# Chunks of at most this many images: small enough that a lost worker costs little and progress moves
# smoothly, large enough that Dask's per-task cost (milliseconds) vanishes beside the scoring.
MAX_CHUNK_IMAGES = 16
# Chunks in flight per worker thread, ahead of the first one not yet written.
CHUNKS_AHEAD_PER_THREAD = 3
CONNECT_TIMEOUT_S = 10.0
# A scattered value lives on the workers only: Dask cannot compute it again, so when every worker holding the
# model has died, the tasks that read it are cancelled (dask/distributed#3149). The model is then sent again and
# those chunks resubmitted, at most this many times in a run.
MAX_MODEL_RESENDS = 3
WORKERS_TIMEOUT_S = 60.0
# Environment variables the Dask nanny sets in the process that starts a LocalCluster (to one thread each, for
# its children); kept as they were for the rest of this process.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_",
                     "PYTHONHASHSEED")


@dataclass(frozen=True)
class ShippedModel:
    """A model folder's files as bytes, sent once to each worker; ``key`` names this exact content."""

    name: str
    key: str
    files: dict[str, bytes]


@dataclass(frozen=True)
class ScoredImage:
    """One image's result as it travels back from a worker: plain values, no anomaly map."""

    score: float | None
    raw_score: float | None
    threshold: float | None
    error: str | None  # the reason the worker could not read the image, or did not inspect it
    overlay_png: bytes | None
    seconds: float
    refused: bool = False  # read but not inspected (core.image_shapes): said as such, not as unreadable

    def to_result(self, path: Path) -> ImageResult:
        if self.error is not None:
            return ImageResult(path, None, (ImageRefused if self.refused else ImageReadError)(path, self.error))
        prediction = Prediction(score=self.score, raw_score=self.raw_score, anomaly_map=None, threshold=self.threshold)
        return ImageResult(path, prediction, None, self.seconds)


def ship_model(model_path: str | os.PathLike) -> ShippedModel:
    """Check the model folder here, as a plain run would, and read the files its detector has."""
    from anomalyapp.engine.bundle import MANIFEST, read_manifest, recover_interrupted_save
    from anomalyapp.engine.detector import DETECTORS

    folder = Path(model_path)
    recover_interrupted_save(folder)
    manifest = read_manifest(folder)
    names = (MANIFEST, *DETECTORS[manifest["detector"]].data_files)
    try:
        files = {name: (folder / name).read_bytes() for name in names}
    except OSError as error:
        raise AppError(f"cannot read model {folder}: {error.strerror or error}") from None
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return ShippedModel(folder.name, digest.hexdigest(), files)


# -- on a worker ----------------------------------------------------------------------------------------
# One loaded model per worker process, used by one task at a time (InferenceSession is thread-confined).
_worker_lock = threading.Lock()
_worker_model: dict[str, object] = {"key": None, "session": None}  # key: (model, device, weights)


def _worker_session(model: ShippedModel, app_version: str, device: str, weights: str | None) -> InferenceSession:
    if app_version != __version__:
        raise AppError(f"a Dask worker runs anomalyapp {__version__}, the client {app_version}: install the same "
                       f"version on every machine")
    key = (model.key, device, weights)
    if _worker_model["key"] == key:
        return _worker_model["session"]
    _worker_model.update(key=None, session=None)  # the previous model goes before the next one loads
    folder = _worker_folder() / "anomalyapp-models" / model.key[:16] / model.name
    for name, data in model.files.items():
        write_atomically(folder / name, data)
    session = InferenceSession(folder, device=device, weights=weights)
    _worker_model.update(key=key, session=session)
    return session


def _worker_folder() -> Path:
    from distributed import get_worker

    try:
        return Path(get_worker().local_directory)  # Dask removes it with the worker
    except ValueError:  # not on a worker (a task run in the client's process)
        return _client_process_folder()


@functools.cache
def _client_process_folder() -> Path:
    """One folder per process, removed when it exits: the system temp folder itself kept every model ever scored in
    the client's process (69 copies from the test runs of two days on one machine)."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="anomalyapp-models-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def score_chunk(model: ShippedModel, paths: list[str], overlays: bool, app_version: str, device: str,
                weights: str | None, max_pixels: float | None) -> list[ScoredImage]:
    """The task a worker runs: score ``paths`` (absolute, as the worker sees them) with the shipped model."""
    from anomalyapp.services.settings import apply_pixel_limit

    with _worker_lock:
        apply_pixel_limit(max_pixels)
        session = _worker_session(model, app_version, device, weights)
        scored = []
        for path in paths:
            result = session.predict_path(path, keep_pixels=overlays)
            if not result.ok:
                scored.append(ScoredImage(None, None, None, result.error.reason, None, 0.0,
                                          refused=isinstance(result.error, ImageRefused)))
                continue
            prediction = result.prediction
            scored.append(ScoredImage(float(prediction.score), float(prediction.raw_score), float(prediction.threshold),
                                      None, overlay_png(result) if overlays else None, result.seconds))
        return scored


# -- on the client --------------------------------------------------------------------------------------
@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None,
                   connect_timeout: float = CONNECT_TIMEOUT_S) -> Iterator:
    """A ``distributed.Client`` connected to the scheduler at ``scheduler``, or to a ``LocalCluster`` of
    ``workers`` processes on this machine (closed again on exit). Each local worker runs one task at a time
    with its share of the CPU cores for torch's threads."""
    from distributed import Client, LocalCluster

    if (scheduler is None) == (workers is None):
        raise AppError("give either a scheduler address or a number of local workers")
    cluster = None
    kept = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    try:
        if scheduler is not None:
            try:
                _check_reachable(scheduler, connect_timeout)
                client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError, ValueError) as error:
                raise AppError(f"cannot reach the Dask scheduler at {scheduler}: {error.strerror or error}"
                               if isinstance(error, OSError) else
                               f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
        else:
            if workers < 1:
                raise AppError(f"the number of local workers must be at least 1, not {workers}")
            threads = max(1, (os.cpu_count() or 1) // workers)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.CRITICAL,
                                   env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
            client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_reachable(address: str, timeout: float) -> None:
    """Refuse a malformed address, and a TCP one nobody answers at, before a ``Client`` is made: a Client that
    fails to connect leaves a half-made object whose clean-up prints tracebacks when the process ends."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme == "tcp":
        host, port = parse_host_port(location)
        socket.create_connection((host, port), timeout=timeout).close()


def _wait_for_workers(client, timeout: float) -> int:
    """The worker threads the cluster has now, after waiting for a first worker if there is none."""
    if not client.nthreads():
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise AppError(f"no Dask worker has joined the scheduler at {client.scheduler.address} within "
                           f"{timeout:g} s; start one with: dask worker {client.scheduler.address}") from None
    return sum(client.nthreads().values())


def _send_model(client, model: ShippedModel, workers_timeout: float):
    """Scatter the model to every worker under a key of this run's own, not one named by its content, which the
    scheduler may still be forgetting after an earlier run of the same model released it."""
    _wait_for_workers(client, workers_timeout)
    try:
        return client.scatter(model, broadcast=True, hash=False, timeout=workers_timeout)
    except (OSError, TimeoutError, CancelledError) as error:
        raise AppError(f"cannot send the model to the Dask workers: {error or type(error).__name__}") from None


def chunk_size_for(images: int, threads: int) -> int:
    """About four chunks per worker thread, so the load evens out, within 1..MAX_CHUNK_IMAGES."""
    return max(1, min(MAX_CHUNK_IMAGES, images // max(1, 4 * threads)))


def predict_with_cluster(
    model_path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    weights: str | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress | ImageResult, None, dict]:
    """``predict_on_cluster`` on the scheduler at ``scheduler`` or on ``workers`` local worker processes,
    connected (or started) after the inputs and the model have been checked, and closed at the end."""
    paths = expand_inputs(inputs)
    model = ship_model(model_path)
    where = scheduler or f"{workers} local worker process{'es' if workers != 1 else ''}"
    yield Progress("cluster", 0, None, f"connecting to {where}" if scheduler else f"starting {where}")
    with cluster_client(scheduler, workers) as client:
        return (yield from _score(client, paths, model, out_dir, device, weights, None, cancel, WORKERS_TIMEOUT_S))


def predict_on_cluster(
    client,
    model_path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None,
    *,
    device: str = "auto",
    weights: str | None = None,
    chunk_size: int | None = None,
    cancel: CancelToken | None = None,
    workers_timeout: float = WORKERS_TIMEOUT_S,
) -> Generator[Progress | ImageResult, None, dict]:
    """``predict_to_folder`` with the scoring done by the workers of ``client``'s cluster.

    Yields every ``ImageResult`` in input order (without its anomaly map) and a ``Progress`` after each
    completed chunk; returns the same summary. ``results.csv`` is written last, atomically, in a new run
    folder of ``out_dir``, exactly as a plain run writes it. The workers refuse images above this process's
    pixel limit, as a plain run would.
    """
    paths = expand_inputs(inputs)
    model = ship_model(model_path)
    return (yield from _score(client, paths, model, out_dir, device, weights, chunk_size, cancel, workers_timeout))


def _score(client, paths: list[Path], model: ShippedModel, out_dir, device: str, weights: str | None,
           chunk_size: int | None, cancel: CancelToken | None, workers_timeout: float):
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    from anomalyapp.data.images import pixel_limit

    threads = _wait_for_workers(client, workers_timeout)
    size = chunk_size or chunk_size_for(len(paths), threads)
    chunks = [paths[start:start + size] for start in range(0, len(paths), size)]
    output = RunOutput(run_folder(out_dir) if out_dir else None)
    yield Progress("cluster", 0, None, f"scoring {len(paths)} images on {len(client.nthreads())} Dask workers at "
                                       f"{client.scheduler.address}, in {len(chunks)} chunks")
    shipped = _send_model(client, model, workers_timeout)
    run = uuid.uuid4().hex[:12]
    options = (output.out is not None, __version__, device, weights, pixel_limit())
    pending = as_completed()
    in_flight = {}  # key: (future, chunk index, the model future it reads)
    ahead = max(2, CHUNKS_AHEAD_PER_THREAD * threads)
    done, submitted, written, finished, resends = 0, 0, 0, {}, 0

    def submit(index: int) -> None:
        readable = [str(path.absolute()) for path in chunks[index]]
        future = client.submit(score_chunk, shipped, readable, *options,
                               key=f"anomalyapp-score-{run}-{index}-{uuid.uuid4().hex[:8]}")
        in_flight[future.key] = (future, index, shipped)
        pending.add(future)

    yield Progress("predict", 0, len(paths), "the workers load the model")
    try:
        while written < len(chunks):
            while submitted < len(chunks) and submitted - written < ahead:
                submit(submitted)
                submitted += 1
            future = next(pending)
            check(cancel)
            _, index, model_read = in_flight.pop(future.key)
            try:
                finished[index] = future.result()
            except KilledWorker:
                raise AppError(f"the images from {chunks[index][0]} on stopped a Dask worker each time they were "
                               f"given to one; score them without --scheduler to see why") from None
            except CancelledError as error:
                if model_read is shipped:
                    if shipped.status == "finished" or resends == MAX_MODEL_RESENDS:
                        raise AppError(f"the Dask cluster dropped the job ({error}); was the scheduler stopped?") \
                            from None
                    resends += 1
                    yield Progress("predict", done, len(paths), "the workers that held the model stopped; "
                                                                "sending it again")
                    shipped.release()
                    shipped = _send_model(client, model, workers_timeout)
                submit(index)  # with the model as sent now
                continue
            future.release()
            done += len(chunks[index])
            while written in finished:
                for path, scored in zip(chunks[written], finished.pop(written)):
                    result = scored.to_result(path)
                    output.add(result, scored.overlay_png)
                    yield result
                written += 1
            yield Progress("predict", done, len(paths), f"{chunks[index][-1].name}: chunk {index + 1} of {len(chunks)}")
    finally:
        if in_flight:
            client.cancel([future for future, _, _ in in_flight.values()])
        shipped.release()
    return output.finish(len(paths))
