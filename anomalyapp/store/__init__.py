"""The project's records database (SQLite): inspections, labels, users, model versions, settings, audit log.

Imports ``core`` only. ``RecordStore`` is the one way in; see ``records.py`` for the guarantees.
"""

from anomalyapp.store.records import (
    CURRENT_MODEL_VERSION,
    FILE_NAME,
    AuditEntry,
    InspectionQuery,
    InspectionRecord,
    LabelRecord,
    ModelVersion,
    RecordStore,
    User,
)

__all__ = [
    "CURRENT_MODEL_VERSION",
    "FILE_NAME",
    "AuditEntry",
    "InspectionQuery",
    "InspectionRecord",
    "LabelRecord",
    "ModelVersion",
    "RecordStore",
    "User",
]
