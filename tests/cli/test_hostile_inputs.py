"""Hostile and unlucky inputs on the command line: runs sharing an --out folder, unreadable inputs, bombs,
formula-like file names in every CSV the app writes."""

from __future__ import annotations

import csv
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher

from anomalyapp.cli.main import main
from anomalyapp.data.images import save_image, set_pixel_limit
from anomalyapp.services.inference import ImageResult, InferenceSession, predict_to_folder
from anomalyapp.services.project import create_project
from anomalyapp.services.records import InspectionRecord, RecordsService

FORMULA_NAME = '=HYPERLINK("evil.example","open")+1.png'


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_runs_into_one_out_folder_at_the_same_time_never_mix(patchcore_model, demo_line, tmp_path):
    session = InferenceSession(patchcore_model, device="cpu")
    out = tmp_path / "out"
    good, scratch = demo_line / "test" / "good", demo_line / "test" / "scratch"
    first = predict_to_folder(session, [good], out)
    second = predict_to_folder(session, [scratch], out)
    # Interleave the two runs image by image, as two processes writing into one folder would.
    first_results = [next(first) for _ in range(4)]
    for _ in second:
        pass
    try:
        while True:
            next(first)
    except StopIteration as stop:
        first_summary = stop.value
    assert any(isinstance(item, ImageResult) for item in first_results)
    runs = sorted(out.glob("run-*"))
    assert len(runs) == 2 and Path(first_summary["out"]) in runs
    for run in runs:
        rows = _rows(run / "results.csv")
        overlays = sorted(p.name for p in run.glob("*_overlay.png"))
        assert len(rows) == 4
        assert overlays == sorted(f"{Path(row['path']).stem}_overlay.png" for row in rows)
        assert len({Path(row["path"]).parent.name for row in rows}) == 1  # one run's inputs only


def test_an_interrupted_run_leaves_no_table_beside_its_overlays(patchcore_model, demo_line, tmp_path):
    session = InferenceSession(patchcore_model, device="cpu")
    out = tmp_path / "out"
    for _ in predict_to_folder(session, [demo_line / "test" / "good"], out):
        pass
    job = predict_to_folder(session, [demo_line / "test" / "scratch"], out)
    next(job), next(job), next(job)  # two images in, then the run is killed
    job.close()
    complete, interrupted = sorted(out.glob("run-*"), key=lambda run: not (run / "results.csv").exists())
    assert len(_rows(complete / "results.csv")) == 4 and len(list(complete.glob("*_overlay.png"))) == 4
    assert not (interrupted / "results.csv").exists()


def test_predict_exits_2_when_no_input_can_be_read(patchcore_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "junk.jpg").write_bytes(b"not a jpeg")
    assert main(["predict", str(patchcore_model), str(folder), "--device", "cpu"]) == 2
    stderr = capsys.readouterr().err
    assert "empty.png" in stderr and "junk.jpg" in stderr
    assert "none of the 2 input images could be inspected" in _one_error_line(stderr)


def test_predict_refuses_an_image_over_the_pixel_limit_until_it_is_raised(patchcore_model, demo_line, tmp_path, capsys):
    image = tmp_path / "big.png"
    shutil.copy(next((demo_line / "test" / "good").iterdir()), image)  # 128 x 128: 0.0164 megapixels
    try:
        assert main(["predict", str(patchcore_model), str(image), "--max-pixels", "0.01", "--device", "cpu"]) == 2
        stderr = capsys.readouterr().err
        assert "0.0164 megapixels (128x128) is above the limit of 0.01 (set --max-pixels" in stderr
        assert main(["predict", str(patchcore_model), str(image), "--max-pixels", "0.02", "--device", "cpu"]) == 0
        assert capsys.readouterr().out.startswith(f"{image},")
        with pytest.raises(SystemExit) as usage:
            main(["predict", str(patchcore_model), str(image), "--max-pixels", "0"])
        assert usage.value.code == 2 and "--max-pixels: must be above 0" in capsys.readouterr().err
    finally:
        set_pixel_limit(None)


def test_train_on_only_unusable_files_names_each_and_exits_2(tmp_path, capsys):
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "b.jpg").write_bytes(b"")
    save_image(folder / "c.png", np.zeros((1, 1), np.uint8))
    save_image(folder / "d.png", np.zeros((700, 3), np.uint8))
    code = main(["train", str(folder), "--weights", "random", "--out", str(tmp_path / "model"), "--device", "cpu"])
    assert code == 2
    stderr = capsys.readouterr().err
    assert "a.png: not a decodable image" in stderr and "b.jpg: empty file" in stderr
    assert "c.png: 1x1 pixels is too small to train on (each side needs at least 32 px)" in stderr
    assert "d.png: 3x700 pixels is too small to train on" in stderr
    assert "no image to fit in" in _one_error_line(stderr)
    assert not (tmp_path / "model").exists()


def test_predict_results_csv_guards_a_formula_file_name(patchcore_model, demo_line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(next((demo_line / "test" / "good").iterdir()), tmp_path / FORMULA_NAME)
    assert main(["predict", str(patchcore_model), FORMULA_NAME, "--out", "out", "--device", "cpu"]) == 0
    [results] = (tmp_path / "out").glob("run-*/results.csv")
    [row] = _rows(results)
    assert row["path"] == "'" + FORMULA_NAME
    assert float(row["score"]) >= 0 and row["verdict"] in ("OK", "NG")


def test_report_csv_guards_a_formula_file_name(tmp_path):
    root = tmp_path / "line"
    create_project(root, "Line")
    with RecordsService(root, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)) as records:
        boss = records.auth.create_first_supervisor("=Boss", "Supervisor1")
        (root / "models" / "m1").mkdir(parents=True, exist_ok=True)
        version = records.add_version("m1", None, "trained", boss)
        records.store.record_inspections([
            InspectionRecord(str(tmp_path / FORMULA_NAME), 0.8, "NG", 0.5, datetime.now().astimezone(), raw_score=-0.25,
                             model_version_id=version.id, user_id=boss.id),
        ])
    target = tmp_path / "report.csv"
    assert main(["report", str(root), "--csv", str(target)]) == 0
    [row] = _rows(target)
    assert row["file_name"] == "'" + FORMULA_NAME
    assert "'=" not in "".join(v for k, v in row.items() if k != "file_name" and k != "user")
    assert row["raw_score"] == "-0.25"  # numbers are values, not formulas: left as they are
