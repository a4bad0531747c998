"""Speed and memory benchmark of PatchCore per backbone on this machine.

For each backbone, in a fresh process so peak memory is its own: fit time (features + coreset) and coreset
time, bank size, peak RSS, and the median predict latency at batch 1 next to the floor. The floor is the
part predict cannot avoid: the same decoded image resized and normalised, then the backbone stages the
detector uses. ``backbone_ms`` (the stages alone, from a ready tensor) is reported beside it. The whole is
repeated with ten times the training patches (each training image also flipped and rotated) to show how
time and memory grow.
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


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_ms(function, repeats: int) -> float:
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


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
    from anomalyapp.engine.detector import build_detector
    from anomalyapp.engine.features import preprocess, resolve_weights

    images = [load_image(p).to_rgb() for p in train_paths]
    if request["factor"] > 1:
        images = _augmented(images, request["factor"])
    probe = load_image(probe_path).to_rgb()
    config = PatchCoreConfig(backbone=backbone, image_size=request["image_size"], coreset_ratio=request["coreset_ratio"])
    detector, _ = build_detector("patchcore", config, resolve_weights(backbone, weights), "cpu")
    started = time.perf_counter()
    coreset_seconds = 0.0
    coreset_started = None
    for progress in detector.fit(iter(images), len(images)):
        if progress.stage == "coreset" and coreset_started is None:
            coreset_started = time.perf_counter()
        if progress.stage == "bank" and coreset_started is not None:
            coreset_seconds = time.perf_counter() - coreset_started
    fit_seconds = time.perf_counter() - started
    raw, maps = detector.raw_predict([probe])
    detector.calibration = calibrate([raw[0]], [float(maps[0].max())], sigmas=3.0, source="bench")

    extractor, spec, size = detector.extractor, detector.extractor.spec, config.image_size
    tensor = preprocess([probe], size, spec)
    with torch.inference_mode():
        backbone_ms = _median_ms(lambda: extractor(tensor), request["repeats"])
        floor_ms = _median_ms(lambda: extractor(preprocess([probe], size, spec)), request["repeats"])
        predict_ms = _median_ms(lambda: detector.predict(probe), request["repeats"])
    return {
        "weights": "random (timing only)" if weights == "random" else "pretrained",
        "train_images": len(images),
        "training_patches": detector.training_patches,
        "bank_size": detector.bank.size,
        "embedding_dim": detector.model.dim,
        "fit_s": fit_seconds,
        "coreset_s": coreset_seconds,
        "predict_ms": predict_ms,
        "floor_ms": floor_ms,
        "backbone_ms": backbone_ms,
        "latency_ratio": predict_ms / floor_ms,
        "ratio_to_backbone": predict_ms / backbone_ms,
        "peak_rss_mb": _peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }


def _weights_for(backbone: str) -> str | None:
    from anomalyapp.core.errors import WeightsError
    from anomalyapp.engine.features import resolve_weights

    try:
        resolve_weights(backbone)
        return None
    except WeightsError:
        return "random"  # speed and memory do not depend on the weights' values; the report says so


def run_benchmark(request: BenchRequest) -> Generator[Progress, None, dict]:
    from anomalyapp.data.datasets import discover_dataset
    from anomalyapp.engine.features import BACKBONES

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
    }
    context = multiprocessing.get_context("spawn")
    runs = [(name, 1) for name in backbones] + ([(name, 10) for name in backbones] if request.scale else [])
    for index, (name, factor) in enumerate(runs):
        yield Progress("bench", index, len(runs), f"{name}{' x10 patches' if factor > 1 else ''}")
        options = {"factor": factor, "repeats": request.repeats, "image_size": request.image_size,
                   "coreset_ratio": request.coreset_ratio}
        with context.Pool(1) as pool:
            figures = pool.apply(_measure, (name, _weights_for(name), train_paths, probe, options))
        (result["backbones"] if factor == 1 else result["scaled_10x"])[name] = figures
    yield Progress("bench", len(runs), len(runs), "done")
    return result


def write_markdown(result: dict, path: Path, command: str) -> None:
    lines = [
        "# Benchmark",
        "",
        f"Produced by `{command}` on {result['machine']['cpu']} ({result['machine']['cores']} cores).",
        f"Data: `{Path(result['data']).name}`; PatchCore, {result['image_size']} px, coreset ratio {result['coreset_ratio']}.",
        "",
        "`floor_ms`: the same decoded image resized, normalised and run through the backbone stages PatchCore uses;",
        "`backbone_ms`: those stages alone on a ready tensor. `predict_ms`: the whole prediction, score and",
        "anomaly map at image size. Medians at batch 1. Peak RSS is the benchmark process's own.",
        "",
    ]
    for title, table in (("Training set as given", result["backbones"]), ("Ten times the training patches", result["scaled_10x"])):
        if not table:
            continue
        lines += [f"## {title}", "",
                  "| backbone | weights | predict ms | floor ms | ratio | backbone ms | ratio to backbone | fit s | coreset s | bank | patches | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, f in table.items():
            rss = "n/a" if f["peak_rss_mb"] is None else f"{f['peak_rss_mb']:.0f}"
            lines.append(
                f"| {name} | {f['weights']} | {f['predict_ms']:.1f} | {f['floor_ms']:.1f} | {f['latency_ratio']:.2f} | "
                f"{f['backbone_ms']:.1f} | {f['ratio_to_backbone']:.2f} | {f['fit_s']:.1f} | {f['coreset_s']:.1f} | "
                f"{f['bank_size']} | {f['training_patches']} | {rss} |"
            )
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
