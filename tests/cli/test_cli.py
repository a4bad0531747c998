"""The CLI as the team's checks call it: exit codes, one-line errors, files written."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest

from anomalyapp.cli.main import main
from cli_helpers import assert_clean_error, run_cli


def test_predict_writes_results_and_overlays(patchcore_model, demo_line, tmp_path):
    out = tmp_path / "out"
    code = main(["predict", str(patchcore_model), str(demo_line / "test" / "good"), str(demo_line / "test" / "scratch"),
                 "--out", str(out)])
    assert code == 0
    [run] = out.glob("run-*")  # each run writes into a folder of its own
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert len(rows) == 8
    assert {row["verdict"] for row in rows} <= {"OK", "NG"}
    scratches = [row for row in rows if "scratch" in row["path"]]
    assert all(row["verdict"] == "NG" for row in scratches)
    assert len(list(run.glob("*_overlay.png"))) == 8


def test_evaluate_writes_all_metric_keys(patchcore_model, demo_line, tmp_path):
    target = tmp_path / "metrics.json"
    assert main(["evaluate", str(patchcore_model), str(demo_line), "--json", str(target)]) == 0
    metrics = json.loads(target.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1_max", "precision", "recall", "accuracy",
                "confusion_matrix", "threshold"):
        assert key in metrics
    assert metrics["image_auroc"] >= 0.9
    assert sum(map(sum, metrics["confusion_matrix"])) == 12
    # the ROC curve comes with the result, from the engine's one implementation
    from anomalyapp.engine.metrics import roc_curve

    rows = metrics["per_image"]
    fpr, tpr, _ = roc_curve([r["defect_type"] != "good" for r in rows], [r["score"] for r in rows])
    assert {key: metrics["roc"][key] for key in ("fpr", "tpr")} == {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    assert len(metrics["roc"]["thresholds"]) == len(fpr)  # each point's threshold, for the window's drill-down


def test_train_skips_an_unreadable_image_and_names_it(demo_line, tmp_path, capsys):
    data = tmp_path / "good"
    shutil.copytree(demo_line / "train" / "good", data)
    (data / "broken.png").write_bytes(b"\x89PNG not really")
    code = main(["train", str(data), "--out", str(tmp_path / "m"), "--image-size", "96", "--aspect", "square", "--device", "cpu"])
    assert code == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "not a decodable image" in captured.err
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert any("broken.png" in entry for entry in manifest["training_set"]["skipped"])
    assert manifest["config"]["keep_aspect"] is False and "squeezed to 96 x 96" in manifest["preprocessing"]["resize"]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "{tmp}/missing"], ["does not exist"]),
        (["train", "{tmp}/empty"], ["no images"]),
        (["train", "{tmp}/one"], ["at least 3 good images"]),
        (["predict", "{tmp}/nomodel", "{tmp}/one"], ["does not exist"]),
        (["evaluate", "{tmp}/nomodel", "{tmp}/one"], ["does not exist"]),
        (["train", "{tmp}/one", "--backbone", "resnet18"], ["resnet18-f37072fd.pth"]),
        (["train", "{tmp}/one", "--weights", "{tmp}/nofile.pth"], ["nofile.pth does not exist"]),
        (["train", "{tmp}/one", "--coreset-ratio", "1.5"], ["coreset ratio"]),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_2(args, fragments, tmp_path, demo_line):
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    shutil.copy(next((demo_line / "train" / "good").iterdir()), tmp_path / "one" / "a.png")
    result = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert_clean_error(result, *fragments)


def test_predict_on_corrupt_image_reports_it_and_goes_on(patchcore_model, demo_line, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(next((demo_line / "test" / "good").iterdir()), folder / "good.png")
    (folder / "zero.jpg").write_bytes(b"")
    result = run_cli("predict", patchcore_model, folder, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "zero.jpg" in result.stderr and "empty file" in result.stderr
    [results] = (tmp_path / "out").glob("run-*/results.csv")
    rows = list(csv.DictReader(results.open()))
    assert [row["verdict"] for row in rows] == ["OK", "error"]


def test_usage_error_exit_code():
    result = run_cli("train")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and "anomalyapp" in result.stdout


def test_evaluate_at_a_working_threshold_reports_false_rejects_and_recall(patchcore_model, demo_line, tmp_path):
    default, lower = tmp_path / "default.json", tmp_path / "lower.json"
    scores_csv = tmp_path / "scores.csv"
    assert main(["evaluate", str(patchcore_model), str(demo_line), "--json", str(default)]) == 0
    assert main(["evaluate", str(patchcore_model), str(demo_line), "--json", str(lower), "--threshold", "0.05",
                 "--csv", str(scores_csv)]) == 0
    at_default, at_lower = json.loads(default.read_text()), json.loads(lower.read_text())
    assert at_default["threshold"] == 0.5 and at_lower["threshold"] == 0.05
    assert at_lower["threshold_raw"] == pytest.approx(at_default["threshold_raw"] * 0.1)
    for key in ("false_reject_rate", "recall", "recall_at_false_reject_rate", "expected_false_reject_rate"):
        assert key in at_lower
    assert set(at_lower["recall_at_false_reject_rate"]) == {"0.01", "0.05"}
    # A threshold far below the calibrated one rejects every good part; the rate follows the scores.
    good = [r["score"] for r in at_lower["per_image"] if r["defect_type"] == "good"]
    assert at_lower["false_reject_rate"] == pytest.approx(sum(s >= 0.05 for s in good) / len(good))
    assert at_lower["false_reject_rate"] > at_default["false_reject_rate"]
    assert at_lower["expected_false_reject_rate"][0] > at_default["expected_false_reject_rate"][0]
    # The good images' count of false rejects against what the calibration expected of that many new parts.
    against = at_lower["false_rejects_against_expected"]
    assert against["good_images"] == len(good) and against["judged_ng"] == sum(s >= 0.05 for s in good)
    assert against["expected_low"] <= against["expected_high"] <= len(good)
    assert against["within"] == (against["expected_low"] <= against["judged_ng"] <= against["expected_high"])
    assert at_default["false_rejects_against_expected"]["good_images"] == len(good)
    rows = list(csv.DictReader(scores_csv.open()))
    assert len(rows) == at_lower["images"]
    assert all(row["verdict"] == ("NG" if float(row["score"]) >= 0.05 else "OK") for row in rows)


def test_training_says_how_many_of_its_folders_good_test_images_to_expect_judged_ng_and_what_a_part_costs(
        demo_line, tmp_path, capsys):
    """The rate's interval is of the long run; 4 good test images show a count, in steps of 25 %. Training states the
    count's interval for this folder's good test images, and evaluate then compares what it finds with that."""
    model = tmp_path / "model"
    assert main(["train", str(demo_line), "--out", str(model), "--image-size", "128", "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    # Beside it, what a part costs to inspect, measured on the held-out images as the training scored them.
    assert re.search(r"^inspection: about (\d+ ms|[\d,]+\.\d s) a part on this machine$", printed.out, re.MULTILINE)
    held_out = json.loads((model / "manifest.json").read_text())["training_set"]["calibration_images"]
    assert f"(median of {held_out} held-out images, reading included)" in printed.err
    said = re.search(r"of the (\d+) good test images here, (\d+)-(\d+) \((\d+)-(\d+) %\)", printed.out)
    assert said, "training states no expectation for the folder's good test images"
    good, low, high = (int(said.group(i)) for i in (1, 2, 3))
    assert good == len(list((demo_line / "test" / "good").iterdir())) and 0 <= low <= high <= good
    assert (int(said.group(4)), int(said.group(5))) == (round(100 * low / good), round(100 * high / good))
    result = tmp_path / "evaluation.json"
    assert main(["evaluate", str(model), str(demo_line), "--json", str(result)]) == 0
    against = json.loads(result.read_text())["false_rejects_against_expected"]
    assert (against["good_images"], against["expected_low"], against["expected_high"]) == (good, low, high)


def test_evaluate_refuses_a_threshold_that_is_not_positive(patchcore_model, demo_line, capsys):
    assert main(["evaluate", str(patchcore_model), str(demo_line), "--threshold", "-1"]) == 2
    assert "threshold -1" in capsys.readouterr().err


def test_predict_reads_a_folder_tree_and_names_each_images_folder(patchcore_model, demo_line, tmp_path):
    out = tmp_path / "out"
    code = main(["predict", str(patchcore_model), str(demo_line / "test"), "--out", str(out)])
    assert code == 0
    [run] = out.glob("run-*")
    rows = list(csv.DictReader((run / "results.csv").open()))
    classes = {p.name for p in (demo_line / "test").iterdir() if p.is_dir()}
    assert len(rows) == len(list((demo_line / "test").rglob("*.png"))) and {row["folder"] for row in rows} == classes


def test_train_with_estimate_says_where_the_time_will_go(demo_line, tmp_path, capsys):
    code = main(["train", str(demo_line), "--detector", "autoencoder", "--epochs", "2", "--estimate",
                 "--out", str(tmp_path / "m"), "--image-size", "64", "--device", "cpu"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    by_stage = next(line for line in lines if line.startswith("by stage: "))
    assert [part.rsplit(" ", 2)[0] for part in by_stage.removeprefix("by stage: ").split(", ")] == [
        "features", "train", "fold 1/3", "fold 2/3", "fold 3/3", "calibrate"]
    assert lines.index(by_stage) == 1 + next(i for i, line in enumerate(lines) if line.startswith("estimate: "))


def test_the_cli_shows_the_whole_jobs_time_left_once_the_training_sends_its_plan(capsys):
    """Each tqdm bar times its own stage; after the autoencoder's plan arrives, the message also gives the time
    left of all the stages to come (the window's rule, core.remaining_time)."""
    from anomalyapp.cli.main import _ProgressPrinter
    from anomalyapp.core.types import Progress

    clock = [0.0]
    printer = _ProgressPrinter(clock=lambda: clock[0])
    shown = []
    for step in range(1, 11):
        clock[0] = float(step)
        printer(Progress("features", step, 10, f"features {step}/10"))
        shown.append(printer.bar.postfix)
    assert all("in all" not in text for text in shown)  # only the stage's own time is known: tqdm shows it
    plan = (("features", 10.0), ("train", 20.0), ("fold 1/3", 13.0), ("fold 2/3", 13.0), ("fold 3/3", 13.0),
            ("calibrate", 12.0))
    for epoch in range(1, 41):
        clock[0] = 10.0 + 0.5 * epoch
        printer(Progress("train", epoch, 40, f"epoch {epoch}/40", plan=plan if epoch == 3 else ()))
    text = printer.bar.postfix
    assert text.startswith("epoch 40/40; about ") and text.endswith(" s left in all")
    assert 40 <= float(text.split("about ")[1].split()[0]) <= 65  # the folds and calibration still to come
    printer.close()


def test_train_takes_the_backbone_stages_to_learn_from(demo_line, tmp_path, capsys):
    """--stages picks the stages the features come from (layer3,layer4 separated the shared sets' verdicts better);
    the model records them and scores with them after a reload; a stage that does not exist is one line, exit 2."""
    from anomalyapp.services.inference import InferenceSession

    out = tmp_path / "deep"
    assert main(["train", str(demo_line), "--out", str(out), "--image-size", "128", "--device", "cpu",
                 "--stages", "layer4,layer3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["layers"] == ["layer3", "layer4"]  # shallow to deep, whatever the order typed
    assert InferenceSession(out, device="cpu").predict_path(sorted((demo_line / "test" / "good").iterdir())[0]).ok
    capsys.readouterr()
    assert main(["train", str(demo_line), "--out", str(tmp_path / "bad"), "--device", "cpu",
                 "--stages", "layer2,layer5"]) == 2
    assert "stages layer2, layer5: name one or more of layer1, layer2, layer3, layer4, each once" in \
        capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
