"""Instant correction: a technician marks a false positive OK, and the model learns it without retraining.

Each detector learns in its own way (``learn_from_good``: PatchCore appends the image's uncovered patches to
its memory bank, the autoencoder gets a short fine-tune on the image). Either way the result is saved as a new model version beside the old one
(the old folder is never touched, so a roll-back is just pointing at it again).

Teaching changes what the station decides: in a project, the acting user needs the ``train`` permission
(checked before anything is learnt) and the new folder becomes the version in use, audited.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path

from anomalyapp.core.cancel import CancelToken
from anomalyapp.core.errors import AppError, ImageReadError
from anomalyapp.core.types import Progress
from anomalyapp.data.images import load_image
from anomalyapp.engine.bundle import reloads_alike, save_model
from anomalyapp.engine.manifest import created_now
from anomalyapp.services.inference import InferenceSession


@dataclass(frozen=True)
class CorrectionResult:
    """A correction saved as a new model version."""

    folder: Path  # the new version's folder
    parent: str  # the folder name of the version it was learnt from
    change: str  # what changed, in words (also the manifest's "change")
    learn_seconds: float  # learning alone
    total_seconds: float  # learning, saving and, in a project, recording the version in use


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
) -> Generator[Progress, None, CorrectionResult]:
    """Teach the session's model that these images are good; save and return the new version.

    The session's detector is updated in place (the caller serialises access to it). When
    ``models_dir`` is a project's, ``actor`` (the acting ``User``) must be allowed to train there.
    """
    from anomalyapp.services import auth
    from anomalyapp.services.project import open_model_change, use_model_version

    target = Path(models_dir) / version_folder_name(session.detector.name)
    records = open_model_change(target, actor, auth.TRAIN)
    try:
        started = time.perf_counter()
        result = yield from _learn(session, image_paths, target, change, cancel)
        if records is not None:
            use_model_version(records, target, result.change, actor, correction=True)
            result = replace(result, total_seconds=time.perf_counter() - started)
        return result
    finally:
        if records is not None:
            records.close()


def _learn(session: InferenceSession, image_paths: list[Path], target: Path, change: str | None,
           cancel: CancelToken | None) -> Generator[Progress, None, CorrectionResult]:
    started = time.perf_counter()
    images = []
    for path in image_paths:
        try:
            images.append(load_image(path).to_rgb())
        except ImageReadError as error:
            raise AppError(str(error)) from None
    if not images:
        raise AppError("no image to learn from")
    try:
        return (yield from _learn_and_save(session, images, image_paths, target, change, cancel, started))
    except BaseException:
        # The detector learnt in place; without its saved version (a full disk, a cancel, a save refused) the
        # session goes back to the version in use, which the records and the screen still name.
        session.reload()
        raise


def _learn_and_save(session: InferenceSession, images: list, image_paths: list[Path], target: Path,
                    change: str | None, cancel: CancelToken | None, started: float
                    ) -> Generator[Progress, None, CorrectionResult]:
    detector = session.detector
    what = yield from detector.learn_from_good(images, cancel)
    learned = time.perf_counter()
    names = ", ".join(Path(p).name for p in image_paths[:5]) + ("…" if len(image_paths) > 5 else "")
    change = change or f"marked good: {names} ({what})"
    manifest = session.manifest
    parent = session.model_path.name
    # Every image taught since the training, not only this correction's: the model learnt from all of them.
    taught = list(dict.fromkeys([*manifest.training_set.get("added_good_images", ()), *map(str, image_paths)]))
    training_set = manifest.training_set | {"added_good_images": taught}
    created = created_now()
    save_model(
        detector,
        target,
        backbone=manifest.backbone,
        training_set=training_set,
        extra={"parent": parent, "change": change, "created": created},
        # the new version, loaded again, scores the taught image as the re-scored results on screen were scored
        check=reloads_alike(detector, images[0], target, session.device),
    )
    session.model_path = target
    session.manifest = manifest.corrected(parent, change, training_set, created)  # as a reload would read it
    yield Progress("correction", 1, 1, change)
    return CorrectionResult(target, parent, change, learned - started, time.perf_counter() - started)
