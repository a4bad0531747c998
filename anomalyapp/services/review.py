"""Review decisions: a person's OK or NG on an inspected part, and what follows from it.

The window and any other front end call ``decide`` with the acting user: the label and its audit entry are
written by the records service (which checks the permission again), and the rule for a false positive, an OK
on a part the model called NG or Review, lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anomalyapp.core.verdicts import Verdict
from anomalyapp.services import auth


@dataclass(frozen=True)
class Decision:
    label: str
    false_positive: bool  # OK on a part the model called NG or Review
    teach: bool  # the model learns the part as good now (a model is loaded and the person may change it)
    recorded: bool  # a label row was written to the records


def is_false_positive(label: str, verdict: str) -> bool:
    return label == "OK" and verdict in (Verdict.NG, Verdict.REVIEW)


def decide(records, record_id: int | None, label: str, verdict: str, user, note: str = "",
           region_png: bytes | None = None, model_loaded: bool = True) -> Decision:
    """Record ``label`` on the inspection ``record_id`` as ``user`` (raises ``AppError`` when refused) and say
    whether the model should learn the part as good. Without records (or a record id) nothing is written."""
    recorded = False
    if records is not None and record_id is not None:
        records.label(record_id, label, note, region_png, user)
        recorded = True
    false_positive = is_false_positive(label, verdict)
    return Decision(label, false_positive, false_positive and model_loaded and auth.can(user, auth.TRAIN), recorded)


def correction_order(verdicts: Sequence[str], corrected: int) -> list[int]:
    """The order to re-score listed results in after a correction: the flagged ones first (their verdicts are
    the ones the technician is waiting for), the corrected part first of its group, then list order."""
    return sorted(range(len(verdicts)), key=lambda i: (verdicts[i] == Verdict.OK, i != corrected))
