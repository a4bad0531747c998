"""Every confirmed label, scored by the model in use.

Each false-positive fix makes a new model version (a new folder), and a score is only comparable with scores
of the same model: the labels confirmed under earlier versions would be lost to the threshold. So each
labelled image is scored again by the model in use, when its file still holds what was inspected (the same
sha256); otherwise its stored score counts only when a version of the model in use gave it.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.types import Progress
from anomalyapp.services.inference import InferenceSession
from anomalyapp.services.records import InspectionQuery, RecordsService, content_sha256


@dataclass(frozen=True)
class LabelledScores:
    """(normalised score by the model in use, label) of every labelled part, once per image."""

    pairs: list[tuple[float, str]] = field(default_factory=list)
    rescored: int = 0  # scored again by the model in use
    kept: int = 0  # file gone or changed, but scored by a version of the model in use: its stored score
    left_out: int = 0  # file gone or changed and scored by another model: cannot be compared

    def describe(self) -> str:
        count = len(self.pairs)
        text = f"{count} labelled part{'' if count == 1 else 's'} scored by the model in use"
        if self.left_out:
            text += f" ({self.left_out} left out: file gone or changed since, scored by another model)"
        return text


def rescore_labelled(records: RecordsService, session: InferenceSession,
                     cancel: CancelToken | None = None) -> Generator[Progress, None, LabelledScores]:
    """Score every labelled image again with ``session`` (the model in use); the latest label of an image
    counts once, whichever version inspected it."""
    inspections = sorted(records.query(InspectionQuery(label="labelled")), key=lambda r: r.id)
    latest = {}
    for record in inspections:  # later inspections of the same image (same content) replace earlier ones
        latest[record.content_sha256 or record.image_path] = record
    current_folder = session.model_path.name
    folders = {version.id: version.folder for version in records.versions()}
    pairs, rescored, kept, left_out = [], 0, 0, 0
    for index, record in enumerate(latest.values()):
        check(cancel)
        path = Path(record.image_path)
        same_file = record.content_sha256 is not None and content_sha256(path) == record.content_sha256
        result = session.predict_path(path) if same_file else None
        if result is not None and result.ok:
            pairs.append((float(result.prediction.score), record.label))
            rescored += 1
        elif folders.get(record.model_version_id) == current_folder:
            pairs.append((float(record.score), record.label))
            kept += 1
        else:
            left_out += 1
        yield Progress("labels", index + 1, len(latest), f"scoring labelled {path.name}")
    return LabelledScores(pairs, rescored, kept, left_out)
