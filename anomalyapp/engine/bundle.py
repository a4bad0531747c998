"""A saved model: a folder with ``manifest.json`` and the detector's data files (``index.faiss`` for PatchCore,
``tensors.safetensors`` for the autoencoder).

Nothing is pickled. The manifest names everything needed to rebuild the detector (detector, config,
backbone and the sha256 of its weights, preprocessing, calibration, training-set fingerprint) and the
sha256 of each data file, so a truncated or altered file is caught before it is used. Since format 3 it also
carries an integrity digest over its own canonical content, so an edit of the manifest itself (a threshold,
a config value, the list of files) is caught too. Which data files a model has is fixed by its detector
class (``data_files``), never read from the manifest, so a manifest cannot point the loader at other files.
Every field is checked before use (``engine.manifest``); a bad one is a ``ModelFileError`` naming the field.

Saving is atomic: the folder is written under a temporary name beside the target, flushed to disk, and
renamed into place; a crash, a full disk or a cancel leaves the previous model (or nothing) under the
final name, never a half-written one. A kill between moving the old folder aside and renaming the new one in
is repaired by the next save or load of that name (``recover_interrupted_save``).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialise_tensors

from anomalyapp import __version__
from anomalyapp.core.errors import ModelFileError, WeightsError
from anomalyapp.core.files import file_sha256
from anomalyapp.engine.calibration import Calibration
from anomalyapp.engine.detector import DETECTORS, build_detector, config_class
from anomalyapp.engine.manifest import check_fields, created_now, is_whole, shown
from anomalyapp.engine.weights import ResolvedWeights, resolve_weights

FORMAT = "anomalyapp-model"
# 2: inputs keep the image's aspect (config.keep_aspect); format-1 models were always square.
# 3: the manifest carries an integrity digest over its canonical content (INTEGRITY).
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
INTEGRITY = "integrity"


# ------------------------------------------------------------------------------------------ integrity
def integrity_digest(manifest: dict, data_files: tuple[str, ...]) -> str:
    """sha256 over the manifest's canonical JSON (without the digest itself) and each data file's listed sha256.

    Canonical: sorted keys, no spaces, ASCII escapes, so re-indenting the file does not change it but any
    change of a value does. The data files' own bytes are tied in through their listed sha256, which the
    loader checks against the files.
    """
    content = {key: value for key, value in manifest.items() if key != INTEGRITY}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())
    listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for name in data_files:
        digest.update(f"\n{name} {listed.get(name)}".encode())
    return digest.hexdigest()


def _check_integrity(folder: Path, manifest: dict, data_files: tuple[str, ...]) -> None:
    stored = manifest.get(INTEGRITY)
    edited = f"model {folder} has been edited: {MANIFEST}"
    if manifest["format_version"] < 3:
        if stored is not None:  # no format-1 or -2 save wrote one: the version was lowered by hand
            raise ModelFileError(f"{edited} says format {manifest['format_version']}, which carries no integrity digest")
        return
    if not isinstance(stored, dict):
        raise ModelFileError(f"{edited} has no integrity digest")
    if stored.get("algorithm") != "sha256" or stored.get("digest") != integrity_digest(manifest, data_files):
        raise ModelFileError(f"{edited} does not match its integrity digest")


# ------------------------------------------------------------------------------------------ files
def _unreadable(path: Path, exc: OSError) -> ModelFileError:
    return ModelFileError(f"cannot read model file {path}: {(exc.strerror or str(exc)).lower()}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_data_file(detector, name: str, path: Path, tensors: dict[str, torch.Tensor]) -> None:
    if name == TENSORS:
        # Serialised here and written by Python, so the file gets the umask's mode like its neighbours
        # (safetensors' own save_file creates it 0600).
        data = serialise_tensors(tensors)
        with open(path, "wb") as handle:
            handle.write(data)
    else:
        detector.write_file(name, path)


def _write_failure(exc: BaseException) -> str:
    """The reason a data file could not be written; faiss and safetensors wrap the OS error in their own text."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    code = re.search(r"os error (\d+)", text)  # safetensors: "I/O error: No space left on device (os error 28)"
    if code:
        return os.strerror(int(code.group(1)))
    tail = re.search(r"\(([^()]+)\)\s*$", text)  # faiss: "... write error in FILE: 65491 != 512000 (No space ...)"
    if tail:
        return tail.group(1)
    return text.splitlines()[0][:200] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------ recovery
def _leftovers(target: Path, kind: str) -> list[Path]:
    try:
        return [p for p in target.parent.glob(f".{glob.escape(target.name)}.{kind}-*") if p.is_dir()]
    except OSError:
        return []


def _saved_at(folder: Path) -> float:
    try:
        return (folder / MANIFEST).stat().st_mtime
    except OSError:
        return 0.0


def recover_interrupted_save(path: str | os.PathLike) -> None:
    """Repair what a killed save left beside the model folder ``path``.

    A save moves the old folder aside (``.NAME.replaced-*``) before renaming the new one in (from
    ``.NAME.saving-*``). Killed between the two, the name is empty: the newest aside folder that passes every
    check goes back under it. Then the leftovers of that name are removed. A folder that cannot be changed
    (read-only) is left as it is; the load that follows reports what it finds.
    """
    target = Path(path)
    replaced, staged = _leftovers(target, "replaced"), _leftovers(target, "saving")
    if not replaced and not staged:
        return
    try:
        if not target.exists():
            for candidate in sorted(replaced, key=_saved_at, reverse=True):
                try:
                    read_manifest(candidate)
                except ModelFileError:
                    continue
                os.replace(candidate, target)
                replaced.remove(candidate)
                break
        for leftover in replaced + staged:
            shutil.rmtree(leftover, ignore_errors=True)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------ save and load
def save_model(detector, path: str | os.PathLike, *, backbone: dict, training_set: dict, extra: dict | None = None,
               check: Callable[[Path], None] | None = None) -> Path:
    """Write ``detector`` to the folder ``path`` atomically; returns the path. ``check(folder)``, when given, is
    called with the written folder before it takes the name (``reloads_alike``): what it raises leaves nothing
    written and a model already at ``path`` unchanged."""
    if detector.calibration is None:
        raise ModelFileError("the model is not calibrated and cannot be saved")
    target = Path(path)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    recover_interrupted_save(target)
    data_files = detector.data_files  # a framed detector's are its inner detector's (engine.framing)
    tensors, state = detector.state_dict()
    staging = parent / f".{target.name}.saving-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        files = {}
        for name in data_files:
            try:
                _write_data_file(detector, name, staging / name, tensors)
            except (OSError, RuntimeError, SafetensorError) as exc:  # faiss raises RuntimeError on a full disk
                raise ModelFileError(f"cannot save model to {target}: writing {name} failed: {_write_failure(exc)}") from None
            files[name] = file_sha256(staging / name)
        config = detector.config
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "app_version": __version__,
            "created": created_now(),
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
            "state": state,
            "files": files,
            **(extra or {}),
        }
        manifest = json.loads(json.dumps(manifest))  # the digest is taken over what a load will read back
        manifest[INTEGRITY] = {"algorithm": "sha256", "digest": integrity_digest(manifest, data_files)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        for name in [*files, MANIFEST]:
            _fsync(staging / name)
        if check is not None:
            check(staging)
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


def reloads_alike(detector, probe: np.ndarray, target: str | os.PathLike, device: str = "cpu"
                  ) -> Callable[[Path], None]:
    """A ``save_model`` check: the written folder, loaded as a station loads it, must score ``probe`` as
    ``detector`` does (to 1e-5, which float sums in another order stay within; a field the save forgot, a
    truncated file or the wrong weights move a score far more). The one inference path is then the saved one."""
    expected = float(detector.raw_predict([probe])[0][0])

    def check(folder: Path) -> None:
        reloaded, _ = load_model(folder, device=device)
        got = float(reloaded.raw_predict([probe])[0][0])
        if not math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-9):
            raise ModelFileError(
                f"the model written for {target} scores a held-out good image {got:.6g} where the trained model "
                f"scored {expected:.6g}: it was not kept (a model already there is unchanged)")

    return check


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check a model folder's manifest and data files; every problem is a ``ModelFileError`` naming the file
    or the manifest field."""
    folder = Path(path)
    if not folder.exists():
        raise ModelFileError(f"model {folder} does not exist")
    if not folder.is_dir():
        raise ModelFileError(f"model {folder} is not a model folder (expected a folder with {MANIFEST})")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(f"{folder} is not an anomalyapp model: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise _unreadable(manifest_path, exc) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"model manifest {manifest_path} is damaged: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{folder} is not an anomalyapp model (its manifest has another format)")
    version = manifest.get("format_version")
    if not is_whole(version) or version < 1:
        raise ModelFileError(f"model manifest {manifest_path} is damaged: no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"model {folder} was saved by a newer anomalyapp (format {version}, app "
            f"{manifest.get('app_version', '?')}); this version {__version__} reads up to format {FORMAT_VERSION}"
        )
    detector = manifest.get("detector")
    if not isinstance(detector, str) or detector not in DETECTORS:
        raise ModelFileError(f"model {folder} uses an unknown detector {shown(detector)}")
    data_files = DETECTORS[detector].data_files
    _check_integrity(folder, manifest, data_files)
    check_fields(folder, manifest, data_files)
    for name in data_files:  # fixed plain names: nothing outside the folder is ever opened
        file_path = folder / name
        if not file_path.is_file():
            raise ModelFileError(f"model {folder} is incomplete: {name} is missing")
        try:
            actual = file_sha256(file_path)
        except OSError as exc:
            raise _unreadable(file_path, exc) from None
        if actual != manifest["files"][name]:
            raise ModelFileError(f"model {folder} is damaged: {name} is truncated or has been changed")
    return manifest


def load_model(path: str | os.PathLike, *, weights: str | None = None, device: str = "cpu"):
    """Load a saved model into a ready detector. ``weights`` overrides where the backbone comes from."""
    folder = Path(path)
    recover_interrupted_save(folder)
    manifest = read_manifest(folder)
    try:
        name = manifest["detector"]
        config_values = dict(manifest["config"])
        if manifest["format_version"] < 2:
            config_values.setdefault("keep_aspect", False)
        # Models saved before stage weighting existed joined their stages as they came; the new default must
        # not change how they score.
        config_type = config_class(name)
        if "stage_weighting" in {f.name for f in dataclasses.fields(config_type)}:
            config_values.setdefault("stage_weighting", "concatenated")
        config = config_type.from_dict(config_values)
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
        tensors = {}
        if TENSORS in detector.data_files:
            try:
                tensors = load_file(str(folder / TENSORS))
            except Exception as exc:
                raise ModelFileError(f"model {folder} is damaged: {TENSORS} cannot be read ({exc})") from None
        detector.load_state(tensors, manifest["state"], folder)
        try:
            detector.calibration = Calibration.from_dict(manifest["calibration"])
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"model {folder} is damaged: manifest field calibration cannot be used ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model {folder} is damaged: its manifest lacks or garbles {exc}") from None
    return detector, manifest
