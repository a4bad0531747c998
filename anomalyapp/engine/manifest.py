"""A model's manifest: the checks each field passes before use, and ``ModelManifest``, its typed view.

A check is (predicate, what a valid value is); a failed one is a ``ModelFileError`` naming the field and
showing the value found.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from anomalyapp.core.config import IMAGE_SIZE_RANGE, INDEX_KINDS, STAGE_WEIGHTINGS
from anomalyapp.core.errors import ModelFileError
from anomalyapp.engine.backbones import BACKBONES, LAYER_NAMES
from anomalyapp.engine.calibration import SUSPECTS_TREATMENTS
from anomalyapp.engine.detector import config_class


@dataclass(frozen=True)
class ModelManifest:
    """The fields of a checked manifest that the use cases read; ``values`` is the whole checked dict."""

    detector: str
    created: str
    app_version: str | None
    backbone: dict
    training_set: dict
    calibration: dict
    parent: str | None  # the version a correction was learnt from
    change: str | None  # what that correction changed
    values: dict

    @classmethod
    def of(cls, manifest: dict) -> ModelManifest:
        """The view over a manifest that ``read_manifest`` (or ``load_model``) has checked."""
        return cls(manifest["detector"], manifest["created"], manifest.get("app_version"), manifest["backbone"],
                   manifest["training_set"], manifest["calibration"], manifest.get("parent"), manifest.get("change"),
                   manifest)

    @property
    def backbone_name(self) -> str:
        return self.backbone["name"]

    def corrected(self, parent: str, change: str, training_set: dict | None = None,
                  created: str | None = None) -> ModelManifest:
        """The manifest as a correction of this model records it (with the images it added, in ``training_set``, and
        the time its version was saved, ``created``)."""
        return ModelManifest.of(self.values | {"parent": parent, "change": change, "created": created or self.created,
                                               "training_set": self.training_set if training_set is None else training_set})

    @property
    def description(self) -> str:
        """How a person is shown the version: detector, backbone, when it was saved (in local time, as the records
        show times); a correction says so."""
        try:
            saved = _dt.datetime.fromisoformat(self.created).astimezone().strftime("%Y-%m-%d %H:%M")
        except ValueError:  # a manifest's own wording of the time, shown as it is
            saved = self.created[:16]
        text = f"{self.detector} / {self.backbone_name} ({saved})"
        return f"{text}, corrected" if self.parent else text


def created_now() -> str:
    """A manifest's ``created``: the moment a version is saved, in UTC to the second."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------ field checks
# A check is (predicate, what a valid value is); the message names the field and shows the value found.
Check = tuple[typing.Callable[[object], bool], str]


def is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(low: int | None = None, high: int | None = None) -> Check:
    if high is not None:
        text = f"a whole number from {low} to {high}"
    else:
        text = "a whole number" + (f" of at least {low}" if low is not None else "")
    return (lambda v: is_whole(v) and (low is None or v >= low) and (high is None or v <= high)), text


def _number(low: float | None = None, high: float | None = None, *, above: bool = False) -> Check:
    """A finite number; ``above`` excludes ``low`` itself."""
    text = "a finite number"
    if low is not None:
        text += f" {'above' if above else 'of at least'} {low:g}"
    if high is not None:
        text += f"{' and' if low is not None else ''} at most {high:g}"

    def valid(value) -> bool:
        if not _is_real(value) or not math.isfinite(value):
            return False
        if low is not None and (value <= low if above else value < low):
            return False
        return high is None or value <= high

    return valid, text


def _optional(check: Check) -> Check:
    valid, text = check
    return (lambda v: v is None or valid(v)), f"null or {text}"


def _list_of(check: Check) -> Check:
    valid, text = check
    return (lambda v: isinstance(v, list) and all(valid(item) for item in v)), f"a list, each item {text}"


def _choice(options) -> Check:
    options = tuple(options)
    return (lambda v: isinstance(v, str) and v in options), "one of " + ", ".join(options)


_TEXT: Check = (lambda v: isinstance(v, str)), "text"
_FLAG: Check = (lambda v: isinstance(v, bool)), "true or false"
_REAL: Check = _is_real, "a number"
_OBJECT: Check = (lambda v: isinstance(v, dict)), "an object"
_SHA256: Check = (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None), "a sha256 (64 hex digits)"
_LAYERS: Check = (
    lambda v: isinstance(v, list) and 0 < len(v) == len(set(v)) and all(name in LAYER_NAMES for name in v),
    f"a list of distinct layer names from {', '.join(LAYER_NAMES)}",
)



def _is_rectangle(value) -> bool:
    return (isinstance(value, list) and len(value) == 4 and all(_is_real(v) and 0 <= v <= 1 for v in value)
            and value[0] < value[2] and value[1] < value[3])


_ROI: Check = (lambda v: isinstance(v, list) and len(v) <= 64 and all(_is_rectangle(r) for r in v),
               "a list of up to 64 rectangles [left, top, right, bottom], shares of the image from 0 to 1, "
               "left < right and top < bottom")

# Ranges of config fields, by name; a field not named here is checked by its type annotation alone.
_CONFIG_LIMITS: dict[str, Check] = {
    "backbone": _choice(BACKBONES),
    "layers": _LAYERS,
    "image_size": _whole(*IMAGE_SIZE_RANGE),
    "embedding_dim": _whole(1, 1 << 16),
    "neighbourhood": _whole(1, 15),
    "coreset_ratio": _number(0, 1, above=True),
    "max_bank_size": _optional(_whole(1)),
    "coreset_projection_dim": _whole(1, 1 << 16),
    "reweight_neighbours": _whole(1, 1024),
    "index": _choice(INDEX_KINDS),
    "sigma": _number(0, 64),
    "region_kernel": _whole(1, 64),
    "latent_dim": _optional(_whole(1)),
    "explained_variance": _number(0, 1, above=True),
    "epochs": _whole(1),
    "batch_size": _whole(1),
    "min_steps_per_epoch": _whole(1, 1 << 16),
    "learning_rate": _number(0, above=True),
    "score_top_k": _whole(1),
    "score_top_share": _optional(_number(0, 1, above=True)),
    "stage_weighting": _choice(STAGE_WEIGHTINGS),
    "training_noise": _number(0, 10),
    "hard_share": _optional(_number(0, 1, above=True)),
    "hard_after_epochs": _whole(0),
    "roi": _ROI,
    "tile_scale": _optional(_number(0, 4, above=True)),
    "tile_overlap": _number(0, 0.75),
}
_BY_TYPE: dict[object, Check] = {int: _whole(), float: _number(), bool: _FLAG, str: _TEXT}

_BACKBONE_RULES = {"name": _TEXT, "source": _TEXT, "path": _optional(_TEXT), "file": _optional(_TEXT),
                   "weights_sha256": _SHA256}
_CALIBRATION_RULES = {
    "image_threshold": _number(0, above=True),
    "pixel_threshold": _number(0, above=True),
    "good_scores": _list_of(_number()),
    "good_map_maxima": _list_of(_number()),
    "source": _TEXT,
    "rule": _TEXT,
    "defect_scores": _list_of(_number()),
    "f1_threshold": _optional(_number()),
    "suspects": _optional(_list_of(((lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)
                                     and _is_real(v.get("score")) and _is_real(v.get("threshold_without"))),
                                    "an object with a name, a score and a threshold_without"))),
    "suspects_treatment": _optional(_choice(SUSPECTS_TREATMENTS)),
}
# What save_model writes as each detector's "state"; the required ones are those load_model reads.
_STATE_RULES = {
    "patchcore": ({"coverage_radius": _number(0), "training_patches": _whole(0), "bank_size": _whole(1),
                   "bank_kind": _TEXT, "embedding_dim": _whole(1)}, {"coverage_radius", "training_patches"}),
    "autoencoder": ({"channels": _whole(1), "latent_dim": _whole(1), "loss_history": _list_of(_REAL)},
                    {"channels", "latent_dim"}),
}
_MISSING = object()


def _check_from_annotation(annotation) -> Check | None:
    if annotation in _BY_TYPE:
        return _BY_TYPE[annotation]
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple:
        return _list_of(_BY_TYPE[arguments[0]]) if arguments and arguments[0] in _BY_TYPE else None
    if type(None) in arguments and len(arguments) == 2:
        inner = _check_from_annotation(next(a for a in arguments if a is not type(None)))
        return _optional(inner) if inner else None
    return None


def _config_rules(detector_name: str) -> dict[str, Check]:
    cls = config_class(detector_name)
    hints = typing.get_type_hints(cls)
    rules = {}
    for field in fields(cls):
        check = _CONFIG_LIMITS.get(field.name) or _check_from_annotation(hints[field.name])
        if check is not None:
            rules[field.name] = check
    return rules


def shown(value) -> str:
    if value is _MISSING:
        return "nothing"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_field(folder: Path, name: str, value, check: Check) -> None:
    valid, text = check
    if value is _MISSING or not valid(value):
        raise ModelFileError(f"model {folder} is damaged: manifest field {name} must be {text} (found {shown(value)})")


def _check_section(folder: Path, manifest: dict, section: str, rules: dict[str, Check], required=()) -> None:
    values = manifest.get(section, _MISSING)
    _check_field(folder, section, values, _OBJECT)
    for key, check in rules.items():
        if key in values or key in required:
            _check_field(folder, f"{section}.{key}", values.get(key, _MISSING), check)


def check_fields(folder: Path, manifest: dict, data_files: tuple[str, ...]) -> None:
    detector = manifest["detector"]
    for key, check in (("created", _TEXT), ("app_version", _TEXT), ("parent", _TEXT), ("change", _TEXT),
                       ("preprocessing", _OBJECT), ("training_set", _OBJECT)):
        if key in manifest or key in ("created", "training_set"):
            _check_field(folder, key, manifest.get(key, _MISSING), check)
    _check_section(folder, manifest, "config", _config_rules(detector))
    _check_section(folder, manifest, "backbone", _BACKBONE_RULES, ("name", "weights_sha256"))
    _check_section(folder, manifest, "calibration", _CALIBRATION_RULES,
                   ("image_threshold", "pixel_threshold", "good_scores", "good_map_maxima", "source", "rule"))
    # A detector without rules here has its state checked by its own load_state alone.
    _check_section(folder, manifest, "state", *_STATE_RULES.get(detector, ({}, ())))
    listed = manifest.get("files", _MISSING)
    _check_field(folder, "files", listed, (lambda v: isinstance(v, dict), f"an object giving the sha256 of {', '.join(data_files)}"))
    for name in listed:
        if name not in data_files:
            raise ModelFileError(f"model {folder} is damaged: manifest field files names {name!r}, which is not a "
                                 f"file of a {detector} model (its files: {', '.join(data_files)})")
    for name in data_files:
        _check_field(folder, f"files.{name}", listed.get(name, _MISSING), _SHA256)


