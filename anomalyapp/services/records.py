"""Use cases over a project's records: record results, label them, search, summarise, tune the threshold
from confirmed labels, and keep the history of model versions (apply a threshold, roll back).

Every use case that changes something takes the acting ``User`` and checks its permission first, against
the account as stored now (``AuthService.require``); the store writes the change and its audit entry in one
transaction.

The decision rule in use (threshold and uncertain band) lives here, in the project's settings, and changes
only through ``set_threshold`` (or with a model version: training, applying a threshold, rolling back), each
checked and audited in the transaction that makes the change. ``record_results`` judges with that rule and
records the version in use; a caller cannot pass its own.

Scores are the detectors' normalised scores (the calibrated threshold sits at 0.5), so a threshold learnt
from labels applies to every version that shares the same model folder; ``threshold_from_labels`` therefore
looks, by default, at the labelled inspections of the current version's folder only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from anomalyapp.core.errors import AppError, DataError, ModelFileError
from anomalyapp.core.files import file_sha256
from anomalyapp.core.image_names import shown_name
from anomalyapp.core.verdicts import (  # verdict_for re-exported for the front ends
    NORMALISED_THRESHOLD,
    RULE_DECIMALS,
    rule_text,
    stated_rule,
    verdict_for,
)
from anomalyapp.services import auth
from anomalyapp.store.records import (  # the record types, re-exported for the front ends (they may not import store)
    CURRENT_MODEL_VERSION,
    LABELS,
    VERDICTS,
    AuditEntry,
    InspectionQuery,
    InspectionRecord,
    LabelRecord,
    LedgerReport,
    ModelVersion,
    RecordStore,
    User,
)

__all__ = [
    "AuditEntry", "InspectionQuery", "InspectionRecord", "LabelRecord", "LedgerReport", "ModelVersion", "RecordsService",
    "Summary", "ThresholdProposal", "User", "content_sha256", "verdict_for",
]


def content_sha256(path: str | os.PathLike) -> str | None:
    """sha256 of the file's bytes (hex), or None when it cannot be read (e.g. a camera frame never saved)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


@dataclass(frozen=True)
class Summary:
    """Counts over a set of inspections.

    ``confusion[label][verdict]`` counts labelled inspections, label 'OK'/'NG' against verdict
    'OK'/'Review'/'NG'. ``matrix`` is the usual [[tn, fp], [fn, tp]] with NG as positive, where a Review
    verdict counts as not rejected (the machine did not call it NG).
    """

    total: int
    by_verdict: dict[str, int] = field(default_factory=dict)  # OK, Review, NG
    by_label: dict[str, int] = field(default_factory=dict)  # OK, NG, unlabelled
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ng_rate(self) -> float:
        return self.by_verdict.get("NG", 0) / self.total if self.total else 0.0

    @property
    def labelled(self) -> int:
        return self.by_label.get("OK", 0) + self.by_label.get("NG", 0)

    @property
    def false_rejects(self) -> int:
        """Labelled OK but judged NG."""
        return self.confusion.get("OK", {}).get("NG", 0)

    @property
    def escapes(self) -> int:
        """Labelled NG but judged OK: the costly mistake."""
        return self.confusion.get("NG", {}).get("OK", 0)

    @property
    def matrix(self) -> list[list[int]]:
        ok, ng = self.confusion.get("OK", {}), self.confusion.get("NG", {})
        tn, fp = ok.get("OK", 0) + ok.get("Review", 0), ok.get("NG", 0)
        fn, tp = ng.get("OK", 0) + ng.get("Review", 0), ng.get("NG", 0)
        return [[tn, fp], [fn, tp]]

    @classmethod
    def from_counts(cls, counts: dict[tuple[str, str | None], int]) -> Summary:
        by_verdict = {v: 0 for v in VERDICTS}
        by_label = {"OK": 0, "NG": 0, "unlabelled": 0}
        confusion = {label: {v: 0 for v in VERDICTS} for label in LABELS}
        for (verdict, label), n in counts.items():
            by_verdict[verdict] = by_verdict.get(verdict, 0) + n
            by_label[label or "unlabelled"] += n
            if label is not None:
                confusion[label][verdict] = confusion[label].get(verdict, 0) + n
        return cls(sum(counts.values()), by_verdict, by_label, confusion)


@dataclass(frozen=True)
class ThresholdProposal:
    """How the current threshold does on confirmed labels, and the F1-optimal one.

    ``proposed_*`` are None when the labels cannot support a proposal (``message`` says why). The proposed
    threshold lies midway between the lowest score it flags and the next lower labelled score, so it
    separates the labels exactly as the F1-optimal cut does, with the widest margin.
    """

    labelled: int
    labelled_ng: int
    current_threshold: float
    precision: float | None  # None: no part labelled NG
    recall: float | None  # None: no part labelled NG
    f1: float | None  # None: no part labelled NG
    confusion_matrix: list[list[int]]  # [[tn, fp], [fn, tp]] at the current threshold
    proposed_threshold: float | None = None
    proposed_precision: float | None = None
    proposed_recall: float | None = None
    proposed_f1: float | None = None
    proposed_confusion_matrix: list[list[int]] | None = None
    message: str = ""
    # With a stated target: the proposal judges at most this share of the labelled good parts NG.
    target_false_reject_rate: float | None = None
    proposed_false_reject_rate: float | None = None
    false_reject_rate: float | None = None  # at the current threshold
    # What the proposal would have changed on the labelled parts: good parts no longer / newly rejected,
    # defects newly caught / no longer caught.
    changes: dict[str, int] | None = None

    def describe_changes(self) -> str:
        """'would have passed 3 good parts it rejected and caught 1 more defect' (labelled parts only)."""
        if not self.changes:
            return ""
        parts = []
        for key, text in (("good_passed", "passed {} labelled good part(s) it rejected"),
                          ("good_rejected", "rejected {} labelled good part(s) it passed"),
                          ("defects_caught", "caught {} more labelled defect(s)"),
                          ("defects_missed", "missed {} labelled defect(s) it caught")):
            if self.changes.get(key):
                parts.append(text.format(self.changes[key]))
        return ("it would have " + ", ".join(parts)) if parts else "it would have changed no labelled verdict"


# At open the whole hash chain is checked up to this many ledger entries (about half a second here); beyond,
# the quick check (triggers, numbering, newest entries) and `anomalyapp records verify` for the rest.
OPEN_FULL_CHECK_ENTRIES = 20_000

THRESHOLD_IN_USE = "threshold_in_use"  # settings keys of the decision rule in use
UNCERTAIN_LOW_IN_USE = "uncertain_low_in_use"


def check_decision_rule(threshold: float, uncertain_low: float | None) -> tuple[float, float | None]:
    threshold = float(threshold)
    if not math.isfinite(threshold) or threshold <= 0:
        raise AppError(f"a threshold must be a positive number, not {threshold}")
    if uncertain_low is not None:
        uncertain_low = float(uncertain_low)
        if not math.isfinite(uncertain_low) or not 0 <= uncertain_low < threshold:
            raise AppError(f"the uncertain band's lower end must lie between 0 and the threshold {threshold:.3f}, "
                           f"not {uncertain_low}")
    stated = stated_rule(threshold, uncertain_low)
    if stated[0] <= 0:
        raise AppError(f"a threshold must be at least {10 ** -RULE_DECIMALS}, not {threshold}")
    return stated


class RecordsService:
    """The records of the project in ``project_root`` (its ``records.sqlite3``), with accounts in ``auth``."""

    def __init__(self, project_root: str | os.PathLike, *, hasher=None, clock=None):
        self.root = Path(project_root)
        if not self.root.is_dir():
            raise DataError(f"project folder {self.root} does not exist")
        self.store = RecordStore.for_project(self.root)
        self.auth = auth.AuthService(self.store, hasher, **({"clock": clock} if clock else {}))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RecordsService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- recording and labelling ------------------------------------------------------------------

    def record_results(self, results: Iterable, user: User, source: str = "folder") -> list[InspectionRecord]:
        """Record scored images (``ImageResult``-like: ``.path`` and ``.prediction``) in one transaction.

        Unreadable images (no prediction) are skipped. The verdict is judged here with the decision rule in
        use (``decision_rule``) and the records name the model version in use; the content hash is the
        sha256 of the file's bytes.
        """
        user = self.auth.require(user, auth.INSPECT)
        version = self.store.current_model_version()
        model_version_id = version.id if version else None
        threshold, uncertain_low = self.decision_rule()
        records = []
        for result in results:
            prediction = getattr(result, "prediction", None)
            if prediction is None:
                continue
            score = float(prediction.score)
            records.append(InspectionRecord(
                image_path=str(result.path),
                score=score,
                raw_score=float(prediction.raw_score),
                verdict=verdict_for(score, threshold, uncertain_low),
                threshold=float(threshold),
                uncertain_low=uncertain_low,
                content_sha256=content_sha256(result.path),
                model_version_id=model_version_id,
                source=source,
                user_id=user.id,
            ))
        return self.store.record_inspections(records) if records else []

    def label(self, inspection_id: int, label: str, note: str = "", region_png: bytes | None = None,
              user: User | None = None) -> LabelRecord:
        """Confirm or correct an inspection ('OK' or 'NG'), with an optional note and painted region (PNG)."""
        user = self.auth.require(user, auth.LABEL)
        if label not in LABELS:
            raise AppError(f"a label is OK or NG, not {label!r}")
        return self.store.add_label(inspection_id, label, note=note, region_png=region_png, user_id=user.id)

    def label_history(self, inspection_id: int) -> list[LabelRecord]:
        return self.store.labels_for(inspection_id)

    # -- searching --------------------------------------------------------------------------------

    def query(self, query: InspectionQuery | None = None) -> list[InspectionRecord]:
        return self.store.query_inspections(query)

    def count(self, query: InspectionQuery | None = None) -> int:
        return self.store.count_inspections(query)

    def summary(self, query: InspectionQuery | None = None) -> Summary:
        return Summary.from_counts(self.store.counts_by_verdict_and_label(query))

    # -- threshold from labels --------------------------------------------------------------------

    def threshold_from_labels(self, current_threshold: float | None = None,
                              query: InspectionQuery | None = None, *,
                              labelled: list[tuple[float, str]] | None = None,
                              target_false_reject_rate: float | None = None) -> ThresholdProposal:
        """Precision/recall/F1 of the current threshold on confirmed labels, and a proposed threshold.

        ``labelled``: (score, label) pairs to use, e.g. every labelled image re-scored by the model in use
        (``services.labels.rescore_labelled``); otherwise the stored scores of the labelled inspections
        scored by any version of the current version's model folder (all of them when no version is
        recorded). The proposal: with ``target_false_reject_rate``, the threshold that judges at most that
        share of the labelled good parts NG with the highest recall (and what it would have changed);
        without it, the F1-optimal one. ``current_threshold`` defaults to the current version's threshold
        (0.5 without one).
        """
        from anomalyapp.engine.metrics import f1_max, threshold_metrics

        if target_false_reject_rate is not None:
            if current_threshold is None:
                current_threshold, _ = self.decision_rule()
            if labelled is None:
                labelled = self.store.labelled_scores(query)
            return _proposal_for_target(labelled, float(current_threshold), float(target_false_reject_rate))

        current = self.store.current_model_version()
        if current_threshold is None:
            current_threshold = current.threshold if current else NORMALISED_THRESHOLD
        if query is None:
            query = InspectionQuery()
            if current is not None:
                same_model = tuple(v.id for v in self.store.model_versions() if v.folder == current.folder)
                query = InspectionQuery(model_version_id=same_model)
        pairs = labelled if labelled is not None else self.store.labelled_scores(query)
        scores = [score for score, _ in pairs]
        labels = [label == "NG" for _, label in pairs]
        n_ng = sum(labels)
        at_current = _labelled_metrics(labels, scores, current_threshold)
        base = ThresholdProposal(
            labelled=len(pairs), labelled_ng=n_ng, current_threshold=float(current_threshold),
            precision=at_current["precision"], recall=at_current["recall"], f1=at_current["f1"],
            confusion_matrix=at_current["confusion_matrix"],
        )
        if n_ng == 0 or n_ng == len(pairs):
            return replace(base, message="A proposal needs at least one inspection labelled NG and one labelled OK.")
        _, best = f1_max(labels, scores)
        below = [s for s in scores if s < best]
        proposed = (best + max(below)) / 2.0 if below else best
        at_proposed = threshold_metrics(labels, scores, proposed)
        message = "The proposal: the threshold that best separates the labels (F1-optimal)."
        return replace(
            base, proposed_threshold=float(proposed), proposed_precision=at_proposed["precision"],
            proposed_recall=at_proposed["recall"], proposed_f1=at_proposed["f1"],
            proposed_confusion_matrix=at_proposed["confusion_matrix"], message=message,
        )

    def apply_threshold(self, value: float, user: User) -> ModelVersion:
        """Make ``value`` the threshold in use: a new model version (same folder, change 'threshold X').

        Supervisors only. The caller sets the project's threshold from the returned version.
        """
        user = self.auth.require(user, auth.APPLY_THRESHOLD)
        value, _ = check_decision_rule(value, None)
        current = self.store.current_model_version()
        if current is None:
            raise AppError("no model version is recorded yet: train a model first")
        with self.store.transaction():
            version = self.store.add_model_version(
                current.folder, f"threshold {value:.3f}", value, parent_id=current.id, user_id=user.id,
                make_current=True)
            self._set_rule(value, self._band_below(value), user, f"applied as version {version.id}")
        return version

    # -- the decision rule in use -----------------------------------------------------------------

    def decision_rule(self) -> tuple[float, float | None]:
        """(threshold, lower end of the uncertain band or None) in use: what inspections are judged with, as the
        window states it (``core.verdicts.stated_rule``; records written before kept a calibrated band to every
        place, and the window showed and judged it to 3)."""
        value = self.store.get_setting(THRESHOLD_IN_USE)
        if value is None:  # never set: the model version's threshold, no band
            current = self.store.current_model_version()
            return stated_rule(current.threshold if current else NORMALISED_THRESHOLD, None)
        low = self.store.get_setting(UNCERTAIN_LOW_IN_USE)
        return stated_rule(float(value), float(low) if low is not None else None)

    def set_threshold(self, actor: User, threshold: float, uncertain_low: float | None = None, reason: str = "",
                      project=None) -> bool:
        """Make ``threshold`` (and the uncertain band from ``uncertain_low``, None for none) the rule in use.

        Supervisors only; the change and its audit entries (old and new value, who, why) are one transaction.
        ``project`` (a ``services.project.Project``), when given, keeps its copy of the rule in step. False when
        nothing changed.
        """
        actor = self.auth.require(actor, auth.CHANGE_THRESHOLD)
        threshold, uncertain_low = check_decision_rule(threshold, uncertain_low)
        with self.store.transaction():
            changed = self._set_rule(threshold, uncertain_low, actor, reason)
        if project is not None:
            project.keep_decision_rule(threshold, uncertain_low)
        return changed

    def adopt_decision_rule(self, threshold: float, uncertain_low: float | None) -> bool:
        """A project older than the records' rule: take the rule it already used (its ``project.json``) as the
        rule in use, audited as adopted. Does nothing once a rule is recorded; changes no decision."""
        if self.store.get_setting(THRESHOLD_IN_USE) is not None:
            return False
        threshold, uncertain_low = check_decision_rule(threshold, uncertain_low)
        with self.store.transaction():
            if self.store.get_setting(THRESHOLD_IN_USE) is not None:
                return False
            return self._set_rule(threshold, uncertain_low, None, "adopted from project.json")

    def _band_below(self, threshold: float) -> float | None:
        """The uncertain band's lower end in use, if it still lies below ``threshold``."""
        _, low = self.decision_rule()
        return low if low is not None and low < threshold else None

    def _set_rule(self, threshold: float, uncertain_low: float | None, actor: User | None, reason: str) -> bool:
        old = self.decision_rule()
        if old == (threshold, uncertain_low) and self.store.get_setting(THRESHOLD_IN_USE) is not None:
            return False
        user_id = actor.id if actor else None
        self.store.set_setting(THRESHOLD_IN_USE, repr(threshold), user_id=user_id)
        self.store.set_setting(UNCERTAIN_LOW_IN_USE, None if uncertain_low is None else repr(uncertain_low),
                               user_id=user_id)
        self.store.add_audit_entry("threshold_changed", "threshold", rule_text(*old),
                                   rule_text(threshold, uncertain_low) + (f": {reason}" if reason else ""),
                                   user_id=user_id)
        return True

    # -- model versions ---------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        return self.store.model_versions()

    def current_version(self) -> ModelVersion | None:
        return self.store.current_model_version()

    def add_version(self, folder: str, parent_id: int | None, change: str, user: User,
                    threshold: float = NORMALISED_THRESHOLD, uncertain_low: float | None = None) -> ModelVersion:
        """Record a new model (e.g. after training, change 'trained') and make it current. Supervisors only.

        ``uncertain_low``: the model's calibrated Review band (normalised), which becomes the band in use; a
        new model's scores mean something new. Without it the band in use is kept where it still fits.
        """
        user = self.auth.require(user, auth.TRAIN)
        self._require_folder(folder)
        threshold, uncertain_low = check_decision_rule(threshold, uncertain_low)
        with self.store.transaction():
            version = self.store.add_model_version(folder, change, threshold, parent_id=parent_id, user_id=user.id,
                                                   make_current=True)
            band = uncertain_low if uncertain_low is not None else self._band_below(threshold)
            self._set_rule(threshold, band, user, f"version {version.id} ({change})")
        return version

    def start_with_calibrated_band(self, actor: User, uncertain_low: float | None, project=None) -> bool:
        """A model loaded into a project whose records hold no rule yet (e.g. recorded before the band was
        calibrated): the calibrated threshold and the model's Review band become the rule in use, through
        ``set_threshold`` (checked and audited). False when a rule is already recorded or there is no band."""
        if uncertain_low is None or self.store.get_setting(THRESHOLD_IN_USE) is not None:
            return False
        threshold, _ = self.decision_rule()
        if not 0 <= uncertain_low < threshold:
            return False
        return self.set_threshold(actor, threshold, uncertain_low, reason="the model's calibrated band",
                                  project=project)

    def add_correction(self, folder: str, parent_id: int | None, change: str, user: User,
                       threshold: float | None = None) -> ModelVersion:
        """Record a model corrected in place (e.g. a false positive learnt as good, change 'marked good: x.png')
        and make it current. It changes the model, so it needs the ``train`` permission like a training; the
        threshold carries over from the parent version unless given."""
        user = self.auth.require(user, auth.TRAIN)
        self._require_folder(folder)
        if threshold is None:
            parent = self.store.model_version(parent_id) if parent_id is not None else None
            threshold = parent.threshold if parent else NORMALISED_THRESHOLD
        return self.store.add_model_version(folder, change, threshold, parent_id=parent_id, user_id=user.id,
                                            make_current=True)

    def rollback(self, version_id: int, user: User) -> ModelVersion:
        """Go back to an earlier version: its folder, its threshold and its model's calibrated Review band (the
        band in use was set for another model's scores: kept, a PatchCore model rolled back to from an autoencoder
        sent half its good parts to Review). A model without a calibrated band keeps the band in use where it
        still fits. A version that was in use since the records keep the rule gets the rule it was last judged
        with (``rules_last_in_use``). Supervisors only; audited."""
        user = self.auth.require(user, auth.ROLLBACK)
        version = self.store.model_version(version_id)
        if version is None:
            raise AppError(f"there is no model version {version_id}")
        self._require_folder(version.folder)
        last_rule = self.rules_last_in_use().get(version_id)
        band = self._calibrated_band(version.folder) if last_rule is None else None  # read outside the transaction
        with self.store.transaction():
            restored = self.store.set_current_model_version(version_id, user_id=user.id, action="rollback")
            if last_rule is not None:  # the rule that version was last judged with, as a supervisor left it
                threshold, low = last_rule
            else:  # recorded before the rule was kept in the records: its own threshold and calibrated band
                low = band if band is not None and band < restored.threshold else self._band_below(restored.threshold)
                threshold, low = stated_rule(restored.threshold, low)  # as a new version's rule is kept
            self._set_rule(threshold, low if low is None or low < threshold else None, user,
                           f"rolled back to version {version_id}")
        return restored

    def rules_last_in_use(self) -> dict[int, tuple[float, float | None]]:
        """Per model version: the decision rule (threshold, uncertain band's lower end) in use when that version
        last stopped being the one in use, or now for the current one. Replayed from the audited changes of the
        current version and of the rule, so versions recorded before this was asked have theirs too; a version
        that was never current with a recorded rule is absent."""
        rules: dict[int, tuple[float, float | None]] = {}
        current, threshold, low = None, None, None
        for key, value in self.store.setting_history((CURRENT_MODEL_VERSION, THRESHOLD_IN_USE, UNCERTAIN_LOW_IN_USE)):
            if key == CURRENT_MODEL_VERSION:
                current = int(value) if value else None
            elif key == THRESHOLD_IN_USE:
                threshold = float(value) if value is not None else None
            else:
                low = float(value) if value is not None else None
            if current is not None and threshold is not None:
                rules[current] = (threshold, low)
        return rules

    def rules_shown(self, versions: list[ModelVersion]) -> dict[int, tuple[float, float | None]]:
        """The rule each of ``versions`` is stated with (Model versions, ``records versions``): the one it was last
        judged with, else its own recorded threshold (a version never in use since the records keep the rule)."""
        last = self.rules_last_in_use()
        return {version.id: last.get(version.id, (version.threshold, None)) for version in versions}

    def _calibrated_band(self, folder: str) -> float | None:
        """The Review band the model in ``folder`` was calibrated with; None for a model without one, or whose
        manifest cannot be read (loading it will say why)."""
        from anomalyapp.services.project import calibrated_band

        try:
            return calibrated_band(self.root / "models" / folder)
        except ModelFileError:
            return None

    def _require_folder(self, folder: str) -> None:
        path = self.root / "models" / folder
        if not path.is_dir():
            raise DataError(f"model folder {path} does not exist")

    # -- settings and audit -----------------------------------------------------------------------

    def set_setting(self, key: str, value: str | None, user: User) -> bool:
        """A project setting that only a supervisor may change (audited with old and new value)."""
        user = self.auth.require(user, auth.CHANGE_SETTINGS)
        return self.store.set_setting(key, value, user_id=user.id)

    def set_aside_good_image(self, image: str | os.PathLike, good_folder: str | os.PathLike, user: User,
                             reason: str = "") -> Path:
        """Move a good training image that is not good (the calibration's note names such images) out of the
        good images, into ``set_aside/`` beside them (``<data set>/set_aside/`` for the MVTec layout), so that
        the next training does not learn from it; audited with where it went. Returns its new path.

        Only someone who may train may do it: it changes what the next model learns. Nothing is overwritten,
        and the move is a rename (or, across file systems, a copy under a temporary name renamed into place
        before the original is removed), so the image is never lost or half-written."""
        user = self.auth.require(user, auth.TRAIN)
        image, good_folder = Path(image), Path(good_folder)
        if not image.is_file():
            raise DataError(f"{image} is not a file: nothing to set aside")
        try:
            relative = image.resolve().relative_to(good_folder.resolve())
        except ValueError:
            raise DataError(f"{image} is not in the good images ({good_folder}): only a good image can be set "
                            "aside") from None
        target = set_aside_folder(good_folder) / relative
        if target.exists():
            raise DataError(f"cannot set {image.name} aside: {target} already exists")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _move_whole(image, target)
        except OSError as error:
            raise DataError(f"cannot move {image} to {target}: {error.strerror or error}") from error
        self.store.add_audit_entry("good_image_set_aside", str(image), None,
                                   str(target) + (f" ({reason})" if reason else ""), user_id=user.id)
        return target

    def audit_log(self, subject: str | None = None, limit: int | None = 200):
        return self.store.audit_log(subject=subject, limit=limit)

    def describe_subject(self, subject: str) -> str:
        """An audit entry's subject as a person reads it: 'inspection:201' names the part inspected,
        'inspection 201: good/kos10_Part6.jpg'; any other subject is returned as it is."""
        kind, _, number = subject.partition(":")
        if kind != "inspection" or not number.isdigit():
            return subject
        record = self.store.inspection(int(number))
        return f"inspection {number}: " + (shown_name(record.image_path) if record else "no longer in the records")

    # -- tamper evidence --------------------------------------------------------------------------

    def verify(self, full: bool = True) -> LedgerReport:
        """Check every chained row against the records' hash chain (see ``store.schema``); nothing is changed.
        ``full=False`` checks the triggers, the ledger's numbering and its newest entries only."""
        return self.store.verify_ledger(full=full)

    def check_at_open(self) -> str | None:
        """The warning to show when a project is opened, or None when nothing is wrong. The full check runs
        when the ledger is small enough to be quick (``OPEN_FULL_CHECK_ENTRIES``), the quick one otherwise."""
        report = self.verify(full=False)
        if report.entries <= OPEN_FULL_CHECK_ENTRIES:  # small enough to name every changed row now
            report = self.verify(full=True)
        if report.intact:
            return None
        return (f"the records of this project were changed outside anomalyapp: {'; '.join(report.problems())}. "
                f"Details: anomalyapp records verify {self.root}")


def _labelled_metrics(labels: list[bool], scores: list[float], threshold: float) -> dict:
    """Precision, recall, F1 and the confusion matrix of labelled parts (True: NG) at ``threshold``; with no part
    labelled NG recall is not measured, and neither is precision nor F1 (None)."""
    from anomalyapp.engine.metrics import threshold_metrics

    found = threshold_metrics(labels, scores, threshold) if labels else {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "confusion_matrix": [[0, 0], [0, 0]]}
    if not any(labels):
        found.update(precision=None, recall=None, f1=None)
    return found


def _proposal_for_target(pairs: list[tuple[float, str]], current: float, rate: float) -> ThresholdProposal:
    from anomalyapp.engine.calibration import threshold_from_labelled

    scores = [score for score, _ in pairs]
    labels = [label == "NG" for _, label in pairs]
    good = [score for score, is_ng in zip(scores, labels) if not is_ng]
    defective = [score for score, is_ng in zip(scores, labels) if is_ng]

    def at(threshold: float) -> dict:
        found = _labelled_metrics(labels, scores, threshold)
        found["false_reject_rate"] = sum(s >= threshold for s in good) / len(good) if good else None
        return found

    now = at(current)
    base = ThresholdProposal(
        labelled=len(pairs), labelled_ng=len(defective), current_threshold=current, precision=now["precision"],
        recall=now["recall"], f1=now["f1"], confusion_matrix=now["confusion_matrix"],
        target_false_reject_rate=rate, false_reject_rate=now["false_reject_rate"],
    )
    proposed = threshold_from_labelled(good, defective, rate, current)
    if proposed is None:
        return replace(base, message="A proposal needs at least one inspection labelled OK.")
    then = at(proposed)
    changes = {
        "good_passed": sum(current <= s < proposed for s in good),
        "good_rejected": sum(proposed <= s < current for s in good),
        "defects_caught": sum(proposed <= s < current for s in defective),
        "defects_missed": sum(current <= s < proposed for s in defective),
    }
    message = (f"The proposal: at most {100 * rate:.1f} % of the labelled good parts judged NG, as many defects caught as "
               "that allows" + ("." if defective else " (none is labelled NG yet: label defects to measure recall)."))
    return replace(
        base, proposed_threshold=float(proposed), proposed_precision=then["precision"],
        proposed_recall=then["recall"], proposed_f1=then["f1"], proposed_confusion_matrix=then["confusion_matrix"],
        proposed_false_reject_rate=then["false_reject_rate"], changes=changes, message=message,
    )


# Where set_aside_good_image puts a good image that is not good: beside the good images, never inside them.
SET_ASIDE_FOLDER = "set_aside"


def set_aside_folder(good_folder: str | os.PathLike) -> Path:
    """The folder that set_aside_good_image moves images of ``good_folder`` into: ``set_aside/`` beside the good
    images (in the data set's root for the MVTec layout)."""
    from anomalyapp.services.project import data_root_of

    return data_root_of(good_folder) / SET_ASIDE_FOLDER


def _move_whole(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; across file systems, copy to a temporary name beside ``target``, rename
    that into place, then remove ``source``: at no moment is a partial file under the final name."""
    import errno
    import shutil

    try:
        os.rename(source, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    partial = target.with_name(f".{target.name}.partial")
    try:
        shutil.copy2(source, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    source.unlink()
