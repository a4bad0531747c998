"""Speed and memory benchmark of PatchCore per backbone on this machine.

For each backbone, in a fresh process so peak memory is its own: fit time (features + coreset) and coreset
time, bank size, peak RSS, and the median predict latency at batch 1 next to the floor.

The floor is the bare backbone forward on the same input: the network as published (eval mode, batch norm
as separate layers, the default memory layout) run through the stages PatchCore uses, on the preprocessed
image. That is the figure the peers' ratios are quoted against. Two stricter references are reported beside
it: ``backbone_ms``, the same stages as the detector itself runs them (batch norm folded, channels-last),
and ``preprocess_backbone_ms``, those plus the resize and normalisation of the decoded image. The timed
calls take turns, round by round, so a busy moment on the machine touches them all alike.

The whole is repeated with ten times the training patches (each training image also flipped and rotated)
to show how time and memory grow, and once on a generated line of 300 good images (the demo generator at
its defaults but for the count): the size of a real station's good set, 235,200 patches at 224 px. Fit
time is split into features, coreset, and bank (index and coverage radius), and printed beside the floor
of the features: the floor forward once per training image.
"""

from __future__ import annotations

import multiprocessing
import platform
import statistics
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomalyapp.core.types import Progress


@dataclass
class BenchRequest:
    data: Path | None = None
    backbones: list[str] | None = None
    repeats: int = 30
    scale: bool = True
    image_size: int = 224
    coreset_ratio: float = 0.1
    line_300: bool = True  # also fit and predict on the generated 300-good-image line


def _interleaved_medians_ms(functions: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each function, timed in turns: one call of each per round."""
    for function in functions.values():
        for _ in range(3):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000.0 for name, values in times.items()}


def _augmented(images: list[np.ndarray], factor: int) -> list[np.ndarray]:
    """``factor`` distinct variants of each image (flips and rotations), for the scaling run."""
    variants = [
        lambda a: a,
        lambda a: a[:, ::-1],
        lambda a: a[::-1, :],
        lambda a: np.rot90(a, 1),
        lambda a: np.rot90(a, 2),
        lambda a: np.rot90(a, 3),
        lambda a: np.rot90(a[:, ::-1], 1),
        lambda a: np.rot90(a[:, ::-1], 3),
        lambda a: a[::-1, ::-1][:, ::-1],
        lambda a: np.rot90(a[::-1, :], 2),
    ]
    return [np.ascontiguousarray(variants[i % len(variants)](image)) for image in images for i in range(factor)]


def _measure(backbone: str, weights: str | None, train_paths: list[str], probe_path: str, request: dict) -> dict:
    """One backbone, in its own process."""
    import torch

    from anomalyapp.core.config import PatchCoreConfig
    from anomalyapp.data.images import load_image
    from anomalyapp.engine.calibration import calibrate
    from anomalyapp.engine.cost import peak_memory_mb
    from anomalyapp.engine.detector import build_detector
    from anomalyapp.engine.preprocessing import preprocess
    from anomalyapp.engine.weights import load_network, resolve_weights

    images = [load_image(p).to_rgb() for p in train_paths]
    if request["factor"] > 1:
        images = _augmented(images, request["factor"])
    probe = load_image(probe_path).to_rgb()
    config = PatchCoreConfig(backbone=backbone, image_size=request["image_size"], coreset_ratio=request["coreset_ratio"])
    resolved = resolve_weights(backbone, weights)
    detector, _ = build_detector("patchcore", config, resolved, "cpu")
    started = time.perf_counter()
    stage_ends: dict[str, float] = {}  # when each stage last reported: stages follow one another
    for progress in detector.fit(iter(images), len(images)):
        stage_ends[progress.stage] = time.perf_counter()
    fit_seconds = time.perf_counter() - started
    features_end = stage_ends.get("features", started)
    coreset_seconds = stage_ends["coreset"] - features_end if "coreset" in stage_ends else 0.0
    bank_seconds = time.perf_counter() - stage_ends.get("coreset", features_end)
    raw, maps = detector.raw_predict([probe])
    detector.calibration = calibrate([raw[0]], [float(maps[0].max())], sigmas=3.0, source="bench")

    # Read before the reference network below is built: the peak is the detector's, not the benchmark's.
    peak_rss_mb = peak_memory_mb()

    extractor, spec, size = detector.extractor, detector.extractor.spec, config.image_size
    keep_aspect = config.keep_aspect  # the floor sees the very input shape predict uses
    tensor = preprocess([probe], size, spec, keep_aspect)
    reference = load_network(backbone, resolved, seed=config.seed)
    plain_tensor = tensor.contiguous()
    with torch.inference_mode():
        medians = _interleaved_medians_ms(
            {
                "floor": lambda: reference.stages(plain_tensor, config.layers),
                "backbone": lambda: extractor(tensor),
                "preprocess_backbone": lambda: extractor(preprocess([probe], size, spec, keep_aspect)),
                "predict": lambda: detector.predict(probe),
            },
            request["repeats"],
        )
    return {
        "weights": "random (timing only)" if weights == "random" else "pretrained",
        "train_images": len(images),
        "training_patches": detector.training_patches,
        "bank_size": detector.bank.size,
        "embedding_dim": detector.model.dim,
        "fit_s": fit_seconds,
        "features_s": features_end - started,
        "coreset_s": coreset_seconds,
        "bank_s": bank_seconds,
        # The floor of the fit's features: the bare backbone once per training image.
        "features_floor_s": medians["floor"] * len(images) / 1000.0,
        "predict_ms": medians["predict"],
        "floor_ms": medians["floor"],
        "latency_ratio": medians["predict"] / medians["floor"],
        "backbone_ms": medians["backbone"],
        "ratio_to_backbone": medians["predict"] / medians["backbone"],
        "preprocess_backbone_ms": medians["preprocess_backbone"],
        "ratio_to_preprocess_backbone": medians["predict"] / medians["preprocess_backbone"],
        "peak_rss_mb": peak_rss_mb,
        "threads": torch.get_num_threads(),
    }


def _weights_for(backbone: str) -> str | None:
    from anomalyapp.core.errors import WeightsError
    from anomalyapp.engine.weights import resolve_weights

    try:
        resolve_weights(backbone)
        return None
    except WeightsError:
        return "random"  # speed and memory do not depend on the weights' values; the report says so


def run_benchmark(request: BenchRequest) -> Generator[Progress, None, dict]:
    from anomalyapp.data.datasets import discover_dataset
    from anomalyapp.engine.backbones import BACKBONES

    if request.data is None:
        from anomalyapp.core import paths
        from anomalyapp.data.demo import generate_demo

        request.data = generate_demo(paths.data_dir() / "demo" / "demo_line", seed=0)
    dataset = discover_dataset(request.data)
    train_paths = [str(p) for p in dataset.train_good]
    probe = str(dataset.test[0].path if dataset.test else dataset.train_good[0])
    backbones = request.backbones or list(BACKBONES)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": multiprocessing.cpu_count()},
        "data": str(request.data),
        "image_size": request.image_size,
        "coreset_ratio": request.coreset_ratio,
        "backbones": {},
        "scaled_10x": {},
        "line_300": {},
    }
    runs = [("backbones", name, 1) for name in backbones]
    runs += [("scaled_10x", name, 10) for name in backbones] if request.scale else []
    line_paths = None
    if request.line_300:
        from anomalyapp.core import paths
        from anomalyapp.data.demo import generate_demo

        line = discover_dataset(generate_demo(paths.data_dir() / "demo" / "demo_line_300", seed=0, n_train=300))
        line_paths = ([str(p) for p in line.train_good], str(line.test[0].path))
        runs += [("line_300", name, 1) for name in backbones]
    titles = {"backbones": "", "scaled_10x": " x10 patches", "line_300": " 300 good images"}
    for index, (section, name, factor) in enumerate(runs):
        yield Progress("bench", index, len(runs), f"{name}{titles[section]}")
        options = {"factor": factor, "repeats": request.repeats, "image_size": request.image_size,
                   "coreset_ratio": request.coreset_ratio}
        run_paths, run_probe = line_paths if section == "line_300" else (train_paths, probe)
        result[section][name] = run_in_child(_measure, (name, _weights_for(name), run_paths, run_probe, options))
    yield Progress("bench", len(runs), len(runs), "done")
    return result


def run_in_child(function, args: tuple, started=None):
    """``function(*args)`` in a fresh (spawned) process; its return value, or its error as a RuntimeError.

    The child never outlives us: it exits as soon as this process is gone, however it went (SIGKILL
    included), and it is terminated when we leave early (Ctrl+C, SIGTERM turned into SystemExit, an error).
    ``started(pid)`` is called once the child runs.
    """
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(sender, function, args), daemon=True)
    child.start()
    sender.close()
    try:
        if started is not None:
            started(child.pid)
        wait([receiver, child.sentinel])
        try:
            status, value = receiver.recv()
        except EOFError:
            child.join()
            raise RuntimeError(f"the benchmark process ended without a result (exit code {child.exitcode})") from None
        if status == "error":
            raise RuntimeError(f"the benchmark process failed: {value}")
        child.join()
        return value
    finally:
        if child.is_alive():
            child.terminate()
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join()
        receiver.close()


def _child_main(sender, function, args: tuple) -> None:
    import os
    import threading
    import traceback

    parent = multiprocessing.parent_process()

    def exit_when_parent_is_gone():
        parent.join()  # returns when the parent's end of the sentinel pipe closes: the parent has exited
        os._exit(1)

    threading.Thread(target=exit_when_parent_is_gone, daemon=True).start()
    try:
        sender.send(("ok", function(*args)))
    except BaseException:
        sender.send(("error", traceback.format_exc(limit=-3)))
    finally:
        sender.close()


def write_markdown(result: dict, path: Path, command: str) -> None:
    lines = [
        "# Benchmark",
        "",
        f"Produced by `{command}` on {result['machine']['cpu']} ({result['machine']['cores']} cores).",
        f"Data: `{Path(result['data']).name}`; PatchCore, {result['image_size']} px, coreset ratio {result['coreset_ratio']}.",
        "",
        "`predict_ms`: the whole prediction, score and anomaly map at image size, from the decoded image.",
        "`floor_ms`: the bare backbone forward on the same input: the network as published (eval mode, batch",
        "norm as its own layers, default memory layout), through the stages PatchCore uses, on the preprocessed",
        "image. Stricter references beside it: `stages_ms`, those stages as the detector runs them (batch norm",
        "folded, channels-last), and `resize+stages_ms`, the same plus resizing and normalising the decoded image.",
        "Medians at batch 1; the timed calls take turns round by round. Peak RSS is the benchmark process's own.",
        "",
    ]
    sections = (("Training set as given", result["backbones"]), ("Ten times the training patches", result["scaled_10x"]),
                ("A line of 300 good images (generated)", result.get("line_300", {})))
    for title, table in sections:
        if not table:
            continue
        lines += [f"## {title}", "",
                  "| backbone | weights | predict ms | floor ms | ratio | stages ms | ratio | resize+stages ms | ratio "
                  "| fit s | features s | features floor s | coreset s | bank s | bank | patches | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, f in table.items():
            rss = "n/a" if f["peak_rss_mb"] is None else f"{f['peak_rss_mb']:.0f}"
            lines.append(
                f"| {name} | {f['weights']} | {f['predict_ms']:.1f} | {f['floor_ms']:.1f} | {f['latency_ratio']:.2f} | "
                f"{f['backbone_ms']:.1f} | {f['ratio_to_backbone']:.2f} | {f['preprocess_backbone_ms']:.1f} | "
                f"{f['ratio_to_preprocess_backbone']:.2f} | {f['fit_s']:.1f} | {f.get('features_s', 0.0):.1f} | "
                f"{f.get('features_floor_s', 0.0):.1f} | {f['coreset_s']:.1f} | {f.get('bank_s', 0.0):.1f} | "
                f"{f['bank_size']} | {f['training_patches']} | {rss} |"
            )
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
