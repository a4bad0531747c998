"""Instant correction: a technician marks a false positive OK, and the model learns it without retraining.

PatchCore appends the image's uncovered patches to its memory bank (``add_normal``); the autoencoder gets a
short fine-tune on the image. Either way the result is saved as a new model version beside the old one
(the old folder is never touched, so a roll-back is just pointing at it again).

Teaching changes what the station decides: in a project, the acting user needs the ``train`` permission
(checked before anything is learnt) and the new folder becomes the version in use, audited.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Generator
from pathlib import Path

from anomalyapp.core.cancel import CancelToken
from anomalyapp.core.errors import AppError, ImageReadError
from anomalyapp.core.types import Progress
from anomalyapp.data.images import load_image
from anomalyapp.engine.bundle import save_model
from anomalyapp.services.inference import InferenceSession


def version_folder_name(detector: str) -> str:
    return f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')[:-3]}-{detector}"


def learn_good_images(
    session: InferenceSession,
    image_paths: list[Path],
    models_dir: Path,
    *,
    change: str | None = None,
    cancel: CancelToken | None = None,
    actor=None,
) -> Generator[Progress, None, dict]:
    """Teach the session's model that these images are good; save and return the new version.

    The session's detector is updated in place (the caller serialises access to it). Returns a dict with
    the new folder, its parent folder, what changed and the seconds spent learning and saving. When
    ``models_dir`` is a project's, ``actor`` (the acting ``User``) must be allowed to train there.
    """
    from anomalyapp.services import auth
    from anomalyapp.services.project import open_model_change, use_model_version

    target = Path(models_dir) / version_folder_name(session.detector.name)
    records = open_model_change(target, actor, auth.TRAIN)
    try:
        result = yield from _learn(session, image_paths, target, change, cancel)
        started = result.pop("started")
        if records is not None:
            use_model_version(records, target, result["change"], actor, correction=True)
            result["total_seconds"] = time.perf_counter() - started
        return result
    finally:
        if records is not None:
            records.close()


def _learn(session: InferenceSession, image_paths: list[Path], target: Path, change: str | None,
           cancel: CancelToken | None) -> Generator[Progress, None, dict]:
    started = time.perf_counter()
    images = []
    for path in image_paths:
        try:
            images.append(load_image(path).to_rgb())
        except ImageReadError as error:
            raise AppError(str(error)) from None
    if not images:
        raise AppError("no image to learn from")
    detector = session.detector
    if hasattr(detector, "add_normal"):
        added = yield from detector.add_normal(images, cancel)
        what = f"{added} patches added to the memory bank"
    else:
        yield from detector.fine_tune(images, epochs=5, cancel=cancel)
        what = "autoencoder fine-tuned for 5 epochs"
    learned = time.perf_counter()
    names = ", ".join(Path(p).name for p in image_paths[:5]) + ("…" if len(image_paths) > 5 else "")
    change = change or f"marked good: {names} ({what})"
    manifest = session.manifest
    parent = session.model_path.name
    save_model(
        detector,
        target,
        backbone=manifest["backbone"],
        training_set=manifest["training_set"] | {"added_good_images": [str(p) for p in image_paths]},
        extra={"parent": parent, "change": change},
    )
    session.model_path = target
    session.manifest = manifest | {"parent": parent, "change": change}
    yield Progress("correction", 1, 1, change)
    return {
        "folder": target,
        "parent": parent,
        "change": change,
        "learn_seconds": learned - started,
        "total_seconds": time.perf_counter() - started,
        "started": started,
    }
