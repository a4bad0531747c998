"""A saved model: a folder with ``manifest.json``, ``tensors.safetensors`` and, for PatchCore, ``index.faiss``.

Nothing is pickled. The manifest names everything needed to rebuild the detector (detector, config,
backbone and the sha256 of its weights, preprocessing, calibration, training-set fingerprint) and the
sha256 of each data file, so a truncated or altered file is caught before it is used.

Saving is atomic: the folder is written under a temporary name beside the target, flushed to disk, and
renamed into place; a crash, a full disk or a cancel leaves the previous model (or nothing) under the
final name, never a half-written one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from anomalyapp import __version__
from anomalyapp.core.errors import ModelFileError, WeightsError
from anomalyapp.engine.autoencoder import AutoencoderDetector, FeatureAutoencoder
from anomalyapp.engine.calibration import Calibration
from anomalyapp.engine.detector import DETECTORS, build_detector, config_class
from anomalyapp.engine.features import ResolvedWeights, resolve_weights
from anomalyapp.engine.memory_bank import MemoryBank
from anomalyapp.engine.patchcore import PatchCoreDetector

FORMAT = "anomalyapp-model"
# 2: inputs keep the image's aspect (config.keep_aspect); format-1 models were always square.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
INDEX = "index.faiss"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _tensors_of(detector) -> dict[str, torch.Tensor]:
    if isinstance(detector, AutoencoderDetector):
        state = {f"autoencoder.{k}": v for k, v in detector.autoencoder.state_dict().items()}
        state["feature_mean"] = detector.feature_mean
        state["feature_std"] = detector.feature_std
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return {}


def _state_of(detector) -> dict:
    if isinstance(detector, PatchCoreDetector):
        return {
            "coverage_radius": detector.coverage_radius,
            "training_patches": detector.training_patches,
            "bank_size": detector.bank.size,
            "bank_kind": detector.bank.kind,
            "embedding_dim": detector.model.dim,
        }
    encoder_last = detector.autoencoder.encoder[-1]
    return {"channels": detector.channels, "latent_dim": encoder_last.out_features, "loss_history": detector.loss_history}


def save_model(detector, path: str | os.PathLike, *, backbone: dict, training_set: dict, extra: dict | None = None) -> Path:
    """Write ``detector`` to the folder ``path`` atomically; returns the path."""
    if detector.calibration is None:
        raise ModelFileError("the model is not calibrated and cannot be saved")
    target = Path(path)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    staging = parent / f".{target.name}.saving-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        files = {}
        tensors = _tensors_of(detector)
        if tensors:
            save_file(tensors, str(staging / TENSORS))
            files[TENSORS] = _sha256(staging / TENSORS)
        if isinstance(detector, PatchCoreDetector):
            detector.bank.save(staging / INDEX)
            files[INDEX] = _sha256(staging / INDEX)
        config = detector.config
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "app_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "detector": detector.name,
            "config": config.to_dict(),
            "backbone": backbone,
            "preprocessing": {
                "image_size": config.image_size,
                "resize": (
                    f"area (OpenCV); short side {config.image_size}, long side in proportion (steps of 16, at most 4:1)"
                    if config.keep_aspect
                    else f"area (OpenCV); squeezed to {config.image_size} x {config.image_size}"
                ),
                "colour": "RGB; gray replicated to 3 channels; alpha dropped; 16-bit scaled by 1/65535",
                "mean": list(detector.extractor.spec.mean),
                "std": list(detector.extractor.spec.std),
            },
            "calibration": detector.calibration.to_dict(),
            "training_set": training_set,
            "state": _state_of(detector),
            "files": files,
            **(extra or {}),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        for name in [*files, MANIFEST]:
            _fsync(staging / name)
        previous = None
        if target.exists():
            previous = parent / f".{target.name}.replaced-{uuid.uuid4().hex[:8]}"
            os.replace(target, previous)
        os.replace(staging, target)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelFileError(f"cannot save model to {target}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check a model folder's manifest; every problem is a ``ModelFileError`` naming the file."""
    folder = Path(path)
    if not folder.exists():
        raise ModelFileError(f"model {folder} does not exist")
    if not folder.is_dir():
        raise ModelFileError(f"model {folder} is not a model folder (expected a folder with {MANIFEST})")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(f"{folder} is not an anomalyapp model: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model manifest {manifest_path} is damaged: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{folder} is not an anomalyapp model (its manifest has another format)")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"model manifest {manifest_path} is damaged: no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"model {folder} was saved by a newer anomalyapp (format {version}, app "
            f"{manifest.get('app_version', '?')}); this version {__version__} reads up to format {FORMAT_VERSION}"
        )
    if manifest.get("detector") not in DETECTORS:
        raise ModelFileError(f"model {folder} uses an unknown detector {manifest.get('detector')!r}")
    for name, expected in (manifest.get("files") or {}).items():
        file_path = folder / name
        if not file_path.is_file():
            raise ModelFileError(f"model {folder} is incomplete: {name} is missing")
        if _sha256(file_path) != expected:
            raise ModelFileError(f"model {folder} is damaged: {name} is truncated or has been changed")
    return manifest


def load_model(path: str | os.PathLike, *, weights: str | None = None, device: str = "cpu"):
    """Load a saved model into a ready detector. ``weights`` overrides where the backbone comes from."""
    folder = Path(path)
    manifest = read_manifest(folder)
    try:
        name = manifest["detector"]
        config_values = dict(manifest["config"])
        if manifest["format_version"] < 2:
            config_values.setdefault("keep_aspect", False)
        config = config_class(name).from_dict(config_values)
        backbone = manifest["backbone"]
        if weights is None and backbone.get("source") == "random":
            resolved = ResolvedWeights("random", None)
        elif weights is None and backbone.get("path") and Path(backbone["path"]).is_file():
            resolved = resolve_weights(config.backbone, backbone["path"])
        else:
            resolved = resolve_weights(config.backbone, weights)
        detector, sha = build_detector(name, config, resolved, device)
        if sha != backbone.get("weights_sha256"):
            raise WeightsError(
                f"the backbone weights found ({resolved.path or 'random'}) differ from those model {folder} was "
                f"trained with; pass the original file with --weights"
            )
        state = manifest["state"]
        if isinstance(detector, PatchCoreDetector):
            try:
                detector.bank = MemoryBank.load(folder / INDEX)
            except RuntimeError as exc:
                raise ModelFileError(f"model {folder} is damaged: {INDEX} cannot be read ({exc})") from None
            if detector.bank.dim != detector.model.dim:
                raise ModelFileError(f"model {folder} is damaged: {INDEX} has the wrong vector width")
            detector.coverage_radius = state["coverage_radius"]
            detector.training_patches = state["training_patches"]
        else:
            try:
                tensors = load_file(str(folder / TENSORS))
            except Exception as exc:
                raise ModelFileError(f"model {folder} is damaged: {TENSORS} cannot be read ({exc})") from None
            autoencoder = FeatureAutoencoder(state["channels"], state["latent_dim"])
            try:
                autoencoder.load_state_dict(
                    {k.removeprefix("autoencoder."): v for k, v in tensors.items() if k.startswith("autoencoder.")}
                )
            except RuntimeError:
                raise ModelFileError(f"model {folder} is damaged: {TENSORS} does not fit its manifest") from None
            detector.autoencoder = autoencoder.to(device).eval()
            detector.feature_mean = tensors["feature_mean"]
            detector.feature_std = tensors["feature_std"]
            detector.loss_history = list(state.get("loss_history", []))
        detector.calibration = Calibration.from_dict(manifest["calibration"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model {folder} is damaged: its manifest lacks or garbles {exc}") from None
    return detector, manifest
