"""The hot folder as a line uses it: a real folder, files written in pieces, restarts, bursts, bad files and a
folder that vanishes and returns; verdicts in the project's real records."""

from __future__ import annotations

import itertools
import os
import shutil
import time

import pytest
from hot_folder_helpers import RunningWatch, make_project, part_png, train_random_model

from anomalyapp.core.errors import DataError
from anomalyapp.services.hot_folder import WatchSettings
from anomalyapp.services.records import InspectionQuery, RecordsService


@pytest.fixture(scope="module")
def model(demo_line, tmp_path_factory):
    return train_random_model(demo_line, tmp_path_factory.mktemp("hot_folder_model") / "model")


@pytest.fixture
def project(tmp_path, model, demo_line):
    return make_project(tmp_path / "project", model, demo_line)


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def _done(watch):
    return [o for o in watch.outcomes if o.state == "done"]


def _watch_rows(project):
    with RecordsService(project.root) as records:
        return records.query(InspectionQuery(source="watch"))


def test_a_file_written_in_pieces_is_scored_once_it_is_complete(project, inbox, demo_line):
    data = part_png(demo_line)
    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.8, rescan_seconds=0.2))
    try:
        with open(inbox / "part-001.png", "wb") as camera:
            for start in range(0, len(data), max(1, len(data) // 6)):
                camera.write(data[start:start + max(1, len(data) // 6)])
                camera.flush()
                time.sleep(0.3)  # shorter than the settle time: still being written
                assert not watch.outcomes, "scored before the camera finished writing"
        finished_writing = time.time()
        watch.wait_for(lambda: watch.outcomes)
    finally:
        watch.stop()
    [outcome] = watch.outcomes
    assert outcome.state == "done" and outcome.verdict in ("OK", "NG", "Review")
    assert outcome.finished_at > finished_writing
    [row] = _watch_rows(project)
    assert row.file_name == "part-001.png" and row.id == outcome.inspection_id
    assert outcome.line_verdict.part_id == "part-001" and outcome.line_verdict.project == "line 3"


def test_a_file_renamed_into_the_folder_is_taken_at_once_and_sorted_without_overwriting(project, inbox, demo_line,
                                                                                       tmp_path):
    overlays = tmp_path / "overlays"
    watch = RunningWatch(project, WatchSettings(inbox, sort="move", overlay_dir=overlays, settle_seconds=30))
    try:
        (inbox / "part.png.tmp").write_bytes(part_png(demo_line, 1))  # in progress: left alone
        time.sleep(0.5)
        assert not watch.outcomes
        os.replace(inbox / "part.png.tmp", inbox / "part.png")  # far sooner than the 30 s settle time
        watch.wait_for(lambda: watch.outcomes, timeout=20)
        verdict = watch.outcomes[0].verdict
        # The same name again, for a new part: sorted beside the first, never over it.
        (inbox / "part.png.tmp").write_bytes(part_png(demo_line, 2))
        os.replace(inbox / "part.png.tmp", inbox / "part.png")
        watch.wait_for(lambda: len(watch.outcomes) == 2, timeout=20)
    finally:
        watch.stop()
    first, second = watch.outcomes
    assert first.path == inbox / verdict / "part.png"
    assert second.path.parent.parent == inbox and second.path.name in ("part.png", "part-2.png")
    if second.verdict == verdict:
        assert second.path.name == "part-2.png"
    assert not (inbox / "part.png").exists()
    assert first.overlay.is_file() and first.line_verdict.overlay == str(first.overlay)
    assert second.overlay != first.overlay and second.overlay.is_file()


def test_a_restart_neither_scores_a_file_twice_nor_skips_one(project, inbox, demo_line):
    for index in range(6):
        (inbox / f"part-{index:03d}.png").write_bytes(part_png(demo_line, index))
    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2, queue_limit=50), slow_after=2)
    watch.wait_for(lambda: len(_done(watch)) >= 2)
    watch.stop()  # stopped with parts still queued
    first_run = {o.file_name for o in _done(watch)}
    assert 2 <= len(first_run) < 6
    for index in range(6, 9):  # parts that arrive while the station is down
        (inbox / f"part-{index:03d}.png").write_bytes(part_png(demo_line, index))

    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2, queue_limit=50))
    watch.wait_for(lambda: len(_done(watch)) == 9 - len(first_run))
    time.sleep(1.0)  # a few more rescans: nothing else is scored
    watch.stop()
    second_run = [o.file_name for o in _done(watch)]
    assert not first_run & set(second_run)
    names = sorted(row.file_name for row in _watch_rows(project))
    assert names == [f"part-{index:03d}.png" for index in range(9)]  # each once
    # the queued ones first, in arrival order, then the newcomers
    assert second_run[: 6 - len(first_run)] == sorted(set(f"part-{i:03d}.png" for i in range(6)) - first_run)
    with RecordsService(project.root) as records:  # the watch's working state leaves the records' chain intact
        assert records.store.verify_ledger().intact


def test_a_file_inspected_but_not_yet_sorted_when_the_watch_stopped_is_sorted_at_the_next_start(project, inbox,
                                                                                                   demo_line):
    (inbox / "part-a.png").write_bytes(part_png(demo_line, 0))
    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2))  # as if stopped before its move
    watch.wait_for(lambda: len(_done(watch)) == 1)
    watch.stop()
    verdict = watch.outcomes[0].verdict
    assert (inbox / "part-a.png").exists()

    watch = RunningWatch(project, WatchSettings(inbox, sort="move", settle_seconds=0.2))
    watch.wait_for(lambda: (inbox / verdict / "part-a.png").exists())
    watch.stop()
    assert not watch.outcomes and not (inbox / "part-a.png").exists()  # moved, not inspected again
    assert any("not yet sorted" in m for m in watch.messages())
    assert len(_watch_rows(project)) == 1


def test_a_burst_beyond_the_queue_drops_the_oldest_waiting_and_says_so(project, inbox, demo_line):
    for index in range(12):
        path = inbox / f"part-{index:03d}.png"
        path.write_bytes(part_png(demo_line, index))
        os.utime(path, ns=(1_700_000_000_000_000_000 + index * 10**9,) * 2)  # arrival order
    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2, queue_limit=3))
    watch.wait_for(lambda: len(_done(watch)) == 3)
    summary = watch.stop()
    dropped = [o for o in watch.outcomes if o.state == "dropped"]
    assert [o.file_name for o in dropped] == [f"part-{i:03d}.png" for i in range(9)]
    assert all("queue full" in o.reason for o in dropped)
    assert [o.file_name for o in _done(watch)] == [f"part-{i:03d}.png" for i in range(9, 12)]
    assert summary.dropped == 9 and summary.done == 3
    assert any(item.metrics.get("dropped") == 9 for item in watch.items if hasattr(item, "metrics"))
    assert all((inbox / o.file_name).exists() for o in dropped)  # left in place, not lost
    with RecordsService(project.root) as records:
        states = [w.state for w in records.store.watched_files(str(inbox.resolve()))]
    assert states.count("dropped") == 9 and states.count("done") == 3


def test_files_that_are_not_images_or_cannot_be_read_are_reported_with_the_reason(project, inbox, demo_line):
    (inbox / "notes.txt").write_text("shift report")
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but the camera crashed")
    watch = RunningWatch(project, WatchSettings(inbox, sort="move", settle_seconds=0.2))
    watch.wait_for(lambda: len(watch.outcomes) == 2)
    (inbox / "good.png").write_bytes(part_png(demo_line))
    watch.wait_for(lambda: len(watch.outcomes) == 3)
    watch.stop()
    by_name = {o.file_name: o for o in watch.outcomes}
    assert by_name["notes.txt"].state == "skipped" and "not an image file" in by_name["notes.txt"].reason
    assert (inbox / "notes.txt").exists()
    assert by_name["broken.png"].state == "error" and "broken.png" not in os.listdir(inbox)
    assert by_name["broken.png"].path == inbox / "error" / "broken.png" and by_name["broken.png"].reason
    assert by_name["good.png"].state == "done"  # the watch goes on
    assert [row.file_name for row in _watch_rows(project)] == ["good.png"]


def test_a_folder_that_vanishes_is_reported_and_watching_resumes_when_it_returns(project, inbox, demo_line):
    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2, rescan_seconds=0.2, retry_seconds=0.3))
    (inbox / "before.png").write_bytes(part_png(demo_line, 0))
    watch.wait_for(lambda: len(watch.outcomes) == 1)
    shutil.rmtree(inbox)  # the share goes away
    watch.wait_for(lambda: any("not reachable since" in m for m in watch.messages()))
    inbox.mkdir()
    (inbox / "after.png").write_bytes(part_png(demo_line, 1))
    watch.wait_for(lambda: len(watch.outcomes) == 2)
    watch.stop()
    assert [o.file_name for o in watch.outcomes] == ["before.png", "after.png"]
    assert any("reachable again" in m for m in watch.messages())
    assert str(inbox.resolve()) in next(m for m in watch.messages() if "not reachable" in m)


def test_parts_queued_when_the_share_goes_away_wait_for_it_instead_of_failing(project, inbox, demo_line, tmp_path):
    from anomalyapp.core.types import Progress

    for index in range(30):
        (inbox / f"part-{index:03d}.png").write_bytes(part_png(demo_line, index))
    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2, queue_limit=50, retry_seconds=0.3))
    watch.wait_for(lambda: _done(watch))
    os.rename(inbox, tmp_path / "away")  # the share is unmounted with parts still queued
    watch.wait_for(lambda: any("not reachable since" in m for m in watch.messages()))
    os.rename(tmp_path / "away", inbox)
    watch.wait_for(lambda: len(_done(watch)) == 30)
    watch.stop()
    assert not [o for o in watch.outcomes if o.state != "done"]
    assert sorted(o.file_name for o in _done(watch)) == [f"part-{i:03d}.png" for i in range(30)]
    back = next(i for i, item in enumerate(watch.items)
                if isinstance(item, Progress) and "reachable again" in item.message)
    assert any(o in _done(watch) for o in watch.items[back:])  # some parts were inspected after it came back


def test_a_part_whose_share_goes_away_while_it_is_read_waits_too(project, inbox, demo_line, tmp_path):
    """The share can go between the watch's look at the file and the model's read of it: that part is not an error
    ("file not found") but waits with the rest for the share. The third read unmounts it first, every time."""
    watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2, queue_limit=50, retry_seconds=0.3))
    predict, calls = watch.session.predict_path, itertools.count(1)

    def read_after_the_share_went(path, **options):
        if next(calls) == 3:
            os.rename(inbox, tmp_path / "away")
        return predict(path, **options)

    watch.session.predict_path = read_after_the_share_went
    for index in range(6):
        (inbox / f"part-{index:03d}.png").write_bytes(part_png(demo_line, index))
    watch.wait_for(lambda: any("not reachable since" in m for m in watch.messages()))
    os.rename(tmp_path / "away", inbox)
    watch.wait_for(lambda: len(watch.outcomes) == 6)
    watch.stop()
    assert [(o.file_name, o.state, o.reason) for o in watch.outcomes if o.state != "done"] == []
    assert sorted(o.file_name for o in watch.outcomes) == [f"part-{i:03d}.png" for i in range(6)]


@pytest.mark.parametrize("settings,fragment", [
    ({"folder": "missing"}, "does not exist"),
    ({"sort": "shred"}, "'move' or 'copy'"),
    ({"queue_limit": 0}, "at least 1"),
])
def test_bad_settings_are_one_line_errors(project, inbox, settings, fragment):
    from anomalyapp.services.hot_folder import watch_folder

    values = {"folder": inbox, **settings}
    if values["folder"] == "missing":
        values["folder"] = inbox / "missing"
    with RecordsService(project.root) as records, pytest.raises(DataError, match=fragment):
        next(watch_folder(None, records, None, WatchSettings(**values)))


def test_each_verdict_goes_to_the_line_in_arrival_order(project, inbox, demo_line):
    """The watch hands every verdict to the project's line link; a real local webhook receives them."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from anomalyapp.core.line import LineSettings, WebhookSettings
    from anomalyapp.services.line_link import LineLink

    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    link = LineLink.open(project.root, LineSettings(webhook=WebhookSettings(
        url=f"http://127.0.0.1:{server.server_address[1]}/verdicts")))
    try:
        for index in range(3):
            path = inbox / f"part-{index}.png"
            path.write_bytes(part_png(demo_line, index))
            os.utime(path, ns=(1_700_000_000_000_000_000 + index * 10**9,) * 2)
        (inbox / "part-3.png").write_bytes(b"\x89PNG\r\n\x1a\n cut off")  # the line must hear of it too
        os.utime(inbox / "part-3.png", ns=(1_700_000_000_000_000_000 + 3 * 10**9,) * 2)
        watch = RunningWatch(project, WatchSettings(inbox, settle_seconds=0.2), line=link)
        watch.wait_for(lambda: len(watch.outcomes) == 4)
        watch.stop()
        assert link.wait_until_sent(30)
    finally:
        link.close()
        server.shutdown()
    assert [m["part_id"] for m in received] == ["part-0", "part-1", "part-2", "part-3"]
    assert [m["verdict"] for m in received] == [o.verdict for o in _done(watch)] + ["Error"]
    assert received[-1]["score"] is None
    assert all(m["project"] == "line 3" and m["model_version"] for m in received)
