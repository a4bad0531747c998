"""The hot folder's working state in the records (schema version 6)."""

from __future__ import annotations

import pytest

from anomalyapp.core.errors import StoreError
from anomalyapp.store import schema
from anomalyapp.store.records import RecordStore


def test_a_version_5_file_gains_the_watched_files_table_and_keeps_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "v5.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    assert schema.migrate(conn, path, target=5) == 5
    conn.close()
    with RecordStore.open(path) as store:
        assert store.schema_version == 6 == schema.SCHEMA_VERSION
        first = store.add_watched_file("/line/in", "a.png", 10, 1, "queued")
        store.add_watched_file("/line/in", "b.txt", 3, 2, "skipped", "not an image")
        store.set_watched_state(first.id, "dropped", "queue full")
        assert [(w.name, w.state, w.reason) for w in store.watched_files("/line/in")] == [
            ("a.png", "dropped", "queue full"), ("b.txt", "skipped", "not an image")]
        assert store.watched_file_state("/line/in", "a.png", 10, 1) == ("dropped", None)
        assert store.watched_file_state("/line/in", "a.png", 11, 1) is None  # new content: a new part
        assert store.watched_files("/other") == []


def test_an_unknown_state_is_refused_by_name(tmp_path):
    with RecordStore.open(tmp_path / "r.sqlite3") as store:
        watched = store.add_watched_file("/in", "a.png", 1, 1, "queued")
        with pytest.raises(StoreError, match="unknown watched-file state 'lost'"):
            store.set_watched_state(watched.id, "lost")
        with pytest.raises(StoreError, match="no watched file 999"):
            store.set_watched_state(999, "done")
