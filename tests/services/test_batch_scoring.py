"""Re-scoring on a Dask cluster: a LocalCluster of two worker processes, started here, scores real image files
with a small model, and the run folder must hold what a plain run writes (same rows in the same order, scores
within 1e-5, same overlay names), also when a worker process is killed in the middle of the run."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from anomalyapp.core.errors import AppError
from anomalyapp.core.types import Progress, drain
from anomalyapp.services.batch_scoring import cluster_client, predict_on_cluster, score_chunk, ship_model
from anomalyapp.services.inference import ImageResult, InferenceSession, predict_to_folder

SCORE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def random_model(demo_line, tmp_path_factory) -> Path:
    from anomalyapp.services.training import TrainRequest, train

    request = TrainRequest(data=demo_line, detector="patchcore", out=tmp_path_factory.mktemp("cluster") / "model",
                           image_size=128, device="cpu", weights="random")
    return drain(train(request)).model_path


@pytest.fixture(scope="module")
def images(demo_line, tmp_path_factory) -> Path:
    """The demo line's test images, plus a file that is not an image at all (an error row)."""
    folder = tmp_path_factory.mktemp("archive") / "test"
    shutil.copytree(demo_line / "test", folder)
    (folder / "good" / "zz_broken.png").write_bytes(b"this is not a PNG")
    return folder


@pytest.fixture(scope="module")
def plain_run(random_model, images, tmp_path_factory) -> Path:
    """The plain run's folder, over the images twice (names repeat: overlay names must stay apart)."""
    summary = drain(predict_to_folder(InferenceSession(random_model, device="cpu"), [images, images],
                                      tmp_path_factory.mktemp("plain")))
    return Path(summary["out"])


@pytest.fixture(scope="module")
def plain_rows(plain_run) -> list[dict]:
    return _rows(plain_run)


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each, started for this module."""
    from distributed import Client, LocalCluster

    kept = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                    "MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED")}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as connected:
        yield connected
    for name, value in kept.items():  # the nanny sets them in this process for its children
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _rows(run_folder: Path) -> list[dict]:
    with open(run_folder / "results.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _assert_same_table(rows: list[dict], expected: list[dict]) -> None:
    assert [(r["path"], r["verdict"], r["error"], r["folder"]) for r in rows] == \
        [(r["path"], r["verdict"], r["error"], r["folder"]) for r in expected]
    for row, plain in zip(rows, expected):
        if plain["score"]:
            assert abs(float(row["score"]) - float(plain["score"])) <= SCORE_TOLERANCE, row["path"]
            assert abs(float(row["raw_score"]) - float(plain["raw_score"])) <= SCORE_TOLERANCE, row["path"]


def _overlay_names(run_folder: Path) -> set[str]:
    return {path.name for path in run_folder.glob("*_overlay.png")}


def test_the_cluster_writes_the_plain_runs_table_and_overlays(client, random_model, images, plain_run, plain_rows,
                                                              tmp_path):
    job = predict_on_cluster(client, random_model, [images, images], tmp_path, device="cpu", chunk_size=3)
    yielded = []
    try:
        while True:
            item = next(job)
            if isinstance(item, ImageResult):
                yielded.append(str(item.path))
    except StopIteration as stop:
        summary = stop.value
    out = Path(summary["out"])
    rows = _rows(out)
    _assert_same_table(rows, plain_rows)
    assert yielded == [row["path"] for row in plain_rows]  # results stream back in input order
    broken = [row for row in rows if row["verdict"] == "error"]
    assert len(broken) == 2 and all("zz_broken.png" in row["path"] and row["error"] for row in broken)
    assert summary["error"] == 2 and summary["images"] == len(plain_rows)
    # one overlay per scored image, named as the plain run names them (repeated names kept apart the same way)
    assert len(_overlay_names(out)) == len(plain_rows) - 2
    assert _overlay_names(out) == _overlay_names(plain_run)


def test_a_path_the_worker_cannot_read_is_an_error_row_naming_the_reason(random_model, tmp_path):
    missing = tmp_path / "gone.png"
    scored = score_chunk(ship_model(random_model), [str(missing)], False, __import__("anomalyapp").__version__,
                         "cpu", None, None)
    result = scored[0].to_result(Path("gone.png"))
    assert not result.ok and result.error.reason and str(result.path) == "gone.png"


def test_a_task_run_in_the_clients_process_leaves_no_model_copy_behind(random_model, images, tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    script = ("import sys; from anomalyapp import __version__; "
              "from anomalyapp.services.batch_scoring import score_chunk, ship_model; "
              "scored = score_chunk(ship_model(sys.argv[1]), [sys.argv[2]], False, __version__, 'cpu', None, None); "
              "assert scored[0].score is not None, scored; "
              "import tempfile, pathlib; print(len(list(pathlib.Path(tempfile.gettempdir()).iterdir())))")
    image = sorted((images / "good").glob("0*.png"))[0]
    result = subprocess.run([sys.executable, "-c", script, str(random_model), str(image)], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TMPDIR=str(temp)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[-1]) >= 1  # the model copy was there while the process ran
    assert list(temp.iterdir()) == []


def test_the_cli_scores_on_the_scheduler_it_is_given(client, random_model, images, plain_rows, tmp_path, capsys):
    from anomalyapp.cli.main import main

    code = main(["predict", str(random_model), str(images), str(images), "--out", str(tmp_path), "--device", "cpu",
                 "--scheduler", client.scheduler.address])
    assert code == 0
    (run,) = tmp_path.glob("run-*")
    _assert_same_table(_rows(run), plain_rows)
    assert "2 not inspected" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_one_line_and_exit_2(random_model, images, capsys):
    import socket

    from anomalyapp.cli.main import main

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["predict", str(random_model), str(images), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("anomalyapp predict: error: cannot reach the Dask scheduler at")
    assert "Traceback" not in err
    with pytest.raises(AppError, match="missing port"):
        with cluster_client("no-port-here"):
            pass


def test_the_plain_commands_never_import_distributed():
    code = ("import sys, anomalyapp.cli.main, anomalyapp.services.inference; "
            "sys.exit('distributed' in sys.modules or 'dask' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_a_worker_killed_mid_run_still_yields_every_image_once(client, random_model, images, plain_rows, tmp_path):
    job = predict_on_cluster(client, random_model, [images, images], tmp_path, device="cpu", chunk_size=1)
    killed = None
    try:
        while True:
            item = next(job)
            if killed is None and isinstance(item, Progress) and item.stage == "predict" and item.step >= 1:
                busy = {address: keys for address, keys in client.processing().items() if keys}
                if busy:  # kill a worker process while it scores a chunk
                    address = next(iter(busy))
                    os.kill(client.run(os.getpid, workers=[address])[address], signal.SIGKILL)
                    killed = (address, list(busy[address]))
    except StopIteration as stop:
        summary = stop.value
    assert killed is not None and killed[1], "no worker was busy when the kill came"
    assert killed[0] not in client.nthreads()  # that worker is gone; its chunks ran elsewhere
    _assert_same_table(_rows(Path(summary["out"])), plain_rows)


def test_every_worker_killed_mid_run_sends_the_model_again(client, random_model, images, plain_rows, tmp_path):
    """The scattered model dies with the last worker that held it; Dask cannot compute it again and cancels
    the chunks that read it. The run sends it to the restarted workers and still writes every image once."""
    client.wait_for_workers(2, timeout=60)
    job = predict_on_cluster(client, random_model, [images, images], tmp_path, device="cpu", chunk_size=1)
    killed, messages = False, []
    try:
        while True:
            item = next(job)
            if isinstance(item, Progress):
                messages.append(item.message)
                if not killed and item.stage == "predict" and item.step >= 1:
                    pids = client.run(os.getpid)
                    for pid in pids.values():
                        os.kill(pid, signal.SIGKILL)
                    killed = len(pids) == 2
    except StopIteration as stop:
        summary = stop.value
    assert killed
    assert any("sending it again" in message for message in messages)
    _assert_same_table(_rows(Path(summary["out"])), plain_rows)


def test_an_image_refused_on_a_worker_comes_back_refused_not_unreadable(random_model, images, tmp_path):
    """A worker's result travels as plain values; an image shaped unlike the training images must come back as
    not inspected, with its reason, not as 'cannot read image'."""
    import cv2

    from anomalyapp import __version__
    from anomalyapp.core.errors import ImageRefused
    from anomalyapp.services.batch_scoring import score_chunk, ship_model

    thumbnail = tmp_path / "thumbnail.png"
    cv2.imwrite(str(thumbnail), cv2.resize(cv2.imread(str(sorted((images / "good").glob("0*.png"))[0])), (8, 8)))
    [scored] = score_chunk(ship_model(random_model), [str(thumbnail)], False, __version__, "cpu", None, None)
    result = scored.to_result(thumbnail)
    assert isinstance(result.error, ImageRefused)
    assert str(result.error) == f"{thumbnail}: " + scored.error and scored.error.startswith("8 x 8 px is far smaller")
