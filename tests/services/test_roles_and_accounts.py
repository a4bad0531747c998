"""Roles enforced in the services (whatever front end calls them), accounts that cannot lock a station out,
and logins that are throttled and audited. Real project folders, real SQLite, real Argon2."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from argon2 import PasswordHasher

from anomalyapp.core.errors import DataError
from anomalyapp.core.types import Prediction, drain
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.services import auth
from anomalyapp.services import project as projects
from anomalyapp.services.auth import AuthError, LoginThrottled, PermissionDenied
from anomalyapp.services.correction import learn_good_images
from anomalyapp.services.inference import InferenceSession
from anomalyapp.services.records import RecordsService
from anomalyapp.services.training import TrainRequest, train

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # tests only: the app uses the defaults


@pytest.fixture
def station(tmp_path):
    """A project with a supervisor (Maria) and an operator (Anna), both with known passwords."""
    project = projects.create_project(tmp_path / "project", "washers")
    with RecordsService(project.root, hasher=FAST) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        anna = records.auth.add_user(boss, "Anna", "Operator1", "operator")
    return SimpleNamespace(project=project, boss=boss, anna=anna)


def _results(folder: Path, scores):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, score in enumerate(scores):
        path = folder / f"img_{i:03d}.png"
        path.write_bytes(f"image {i}".encode())
        out.append(SimpleNamespace(path=path, prediction=Prediction(score, score * 10, np.zeros((2, 2)))))
    return out


# --------------------------------------------------------------------------------------------------
# section 2: roles in the services


def test_operator_cannot_train_into_a_project_and_nothing_is_written(station, demo_line):
    models = station.project.models_dir
    request = TrainRequest(data=demo_line, out=models / "new", weights="random", device="cpu")
    with pytest.raises(PermissionDenied, match="^operator Anna may not train or change the model$"):
        drain(train(request, actor=station.anna))
    with pytest.raises(PermissionDenied, match="log in to train"):
        drain(train(request))
    assert not models.exists() or not any(models.iterdir())
    with pytest.raises(DataError, match="goes in its models folder"):
        drain(train(TrainRequest(data=demo_line, out=station.project.root / "elsewhere"), actor=station.boss))
    with RecordsService(station.project.root) as records:
        assert records.versions() == []


def test_operator_cannot_teach_the_model_and_a_supervisor_teaching_is_a_recorded_version(
        station, patchcore_model, demo_line):
    models = station.project.models_dir
    shutil.copytree(patchcore_model, models / "v1")
    with RecordsService(station.project.root) as records:
        records.add_version("v1", None, "trained", station.boss)
    session = InferenceSession(models / "v1", device="cpu")
    flagged = next(item.path for item in discover_dataset(demo_line).test if item.is_anomalous)
    before = session.predict_path(flagged).prediction.raw_score

    with pytest.raises(PermissionDenied, match="operator Anna may not train or change the model"):
        drain(learn_good_images(session, [flagged], models, actor=station.anna))
    assert sorted(p.name for p in models.iterdir()) == ["v1"]
    assert session.predict_path(flagged).prediction.raw_score == before  # nothing learnt

    result = drain(learn_good_images(session, [flagged], models, actor=station.boss))
    with RecordsService(station.project.root) as records:
        current = records.current_version()
        assert (current.folder, current.user_id) == (result.folder.name, station.boss.id)
        assert current.change.startswith("marked good")
        assert records.audit_log(subject=f"model_version:{current.id}")[0].user_id == station.boss.id
    assert projects.open_project(station.project.root).current_model == result.folder.name


def test_threshold_changes_only_through_the_service_checked_and_audited(station, tmp_path):
    project = station.project
    with pytest.raises(AttributeError):
        project.threshold = 5.0
    with pytest.raises(AttributeError):
        project.uncertain_low = 0.1
    with RecordsService(project.root, hasher=FAST) as records:
        before = len(records.audit_log(limit=None))
        with pytest.raises(PermissionDenied, match="^operator Anna may not change the threshold$"):
            records.set_threshold(station.anna, 5.0, reason="try")
        assert len(records.audit_log(limit=None)) == before and records.decision_rule() == (0.5, None)

        assert records.set_threshold(station.boss, 0.6, 0.4, reason="fewer false rejects", project=project)
        assert records.decision_rule() == (0.6, 0.4)
        entry = records.audit_log(subject="threshold")[0]
        assert (entry.action, entry.user_id, entry.old_value) == ("threshold_changed", station.boss.id, "0.500")
        assert entry.new_value == "0.600 (review from 0.400): fewer false rejects"
        assert projects.open_project(project.root).threshold == 0.6  # the project file's copy follows
        assert not records.set_threshold(station.boss, 0.6, 0.4)  # no change, no entry
        with pytest.raises(Exception, match="between 0 and the threshold"):
            records.set_threshold(station.boss, 0.6, 0.7)

        # inspections are judged with the rule in use: the caller has no say
        saved = records.record_results(_results(tmp_path / "images", [0.3, 0.45, 0.65]), station.anna)
        assert [(r.verdict, r.threshold, r.uncertain_low) for r in saved] == [
            ("OK", 0.6, 0.4), ("Review", 0.6, 0.4), ("NG", 0.6, 0.4)]
        with pytest.raises(TypeError):
            records.record_results(_results(tmp_path / "more", [0.3]), None, 5.0, None, station.anna)


def test_a_changed_role_counts_at_once_and_a_foreign_account_is_refused(station, tmp_path):
    with RecordsService(station.project.root, hasher=FAST) as records:
        records.auth.set_role(station.boss, station.anna.id, "supervisor")
        records.auth.set_role(station.anna, station.boss.id, "operator")
        # Maria's User object still says supervisor; the records say otherwise
        with pytest.raises(PermissionDenied, match="operator Maria may not change the threshold"):
            records.set_threshold(station.boss, 0.7)
    other = projects.create_project(tmp_path / "other", single_user="stranger", hasher=FAST)
    with RecordsService(other.root) as records:
        with pytest.raises(PermissionDenied, match="no account in this project"):
            records.set_threshold(station.anna, 0.7)


def test_an_operator_cannot_create_a_project_and_become_its_supervisor(station, tmp_path):
    with pytest.raises(PermissionDenied, match="operator Anna may not create projects"):
        projects.create_project(tmp_path / "mine", single_user="anna", actor=station.anna)
    assert not (tmp_path / "mine").exists()
    made = projects.create_project(tmp_path / "line2", single_user="maria", actor=station.boss, hasher=FAST)
    with RecordsService(made.root) as records:
        assert records.auth.auto_login().name == "maria"


# --------------------------------------------------------------------------------------------------
# section 3: accounts that cannot lock a station out


def test_single_user_mode_goes_off_only_with_a_password_just_typed(tmp_path):
    project = projects.create_project(tmp_path / "solo", single_user="root", hasher=FAST)
    with RecordsService(project.root, hasher=FAST) as records:
        root = records.auth.auto_login()
        assert root is not None and root.is_supervisor
        anna = records.auth.add_user(root, "Anna", "Operator1", "operator")
        for typed in (None, "", "not-the-password1A"):
            with pytest.raises(AuthError, match="type the password of root"):
                records.auth.set_single_user_mode(root, False, typed)
        assert records.auth.single_user_mode()
        # the supervisor sets their own (unknown, random) password, then switches logins on
        records.auth.set_password(root, root.id, "Rootpass1")
        records.auth.set_single_user_mode(root, False, "Rootpass1")
        assert not records.auth.single_user_mode() and records.auth.auto_login() is None
        assert records.auth.authenticate("root", "Rootpass1") == records.store.user(root.id)
        # anyone sets their own password knowing the current one; only a supervisor resets another's
        with pytest.raises(AuthError, match="current password is wrong"):
            records.auth.set_password(anna, anna.id, "Newpass11", old_password="guess")
        records.auth.set_password(anna, anna.id, "Newpass11", old_password="Operator1")
        with pytest.raises(PermissionDenied, match="operator Anna may not manage users"):
            records.auth.set_password(anna, root.id, "Takeover1")
        records.auth.set_password(root, anna.id, "Reset1234")
        assert records.auth.authenticate("anna", "Reset1234").name == "Anna"
        changes = [e.action for e in records.audit_log(subject=f"user:{anna.id}")]
        assert changes.count("password_changed") == 2


_CREATE = """
import sys
from anomalyapp.services import project as projects
projects.create_project(sys.argv[1], "killed", single_user="root")
"""


@pytest.mark.parametrize("point", ["between_supervisor_and_single_user", "before_project_file"])
def test_a_kill_during_project_creation_never_leaves_a_project_nobody_can_log_in_to(tmp_path, point):
    root, marker = tmp_path / "project", tmp_path / "paused"
    env = dict(os.environ, **{projects.TEST_PAUSE_ENV: f"{point}:{marker}"})
    child = subprocess.Popen([sys.executable, "-c", _CREATE, str(root)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the creating process ended before the pause"
            assert time.monotonic() < deadline, "the creating process never reached the pause"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    # the folder is not a project yet: opening it says so, and creating it again gives a working station
    with pytest.raises(DataError, match="not an anomalyapp project"):
        projects.open_project(root)
    project = projects.create_project(root, "again", single_user="root")
    with RecordsService(project.root) as records:
        assert records.auth.auto_login() is not None


# --------------------------------------------------------------------------------------------------
# section 3: logins throttled and audited


class _Clock:
    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_failed_logins_make_the_next_attempt_wait_longer_and_every_attempt_is_audited(station):
    clock = _Clock()
    with RecordsService(station.project.root, hasher=FAST, clock=clock) as records:
        login = records.auth.authenticate
        for _ in range(auth.FREE_FAILURES_PER_NAME + 1):  # the first failures cost nothing
            with pytest.raises(AuthError, match="^wrong user name or password$"):
                login("anna", "wrong")
        with pytest.raises(LoginThrottled, match="wait 1 s") as refused:
            login("anna", "Operator1")  # even the right password waits
        assert 0 < refused.value.wait_s <= 1
        clock.offset += 1.05
        with pytest.raises(AuthError, match="wrong user name"):
            login("anna", "wrong")
        with pytest.raises(LoginThrottled, match="wait 2 s"):
            login("anna", "wrong")
        for _ in range(30):  # thirty more in a row: the waits grow up to the cap
            clock.offset += records.auth.login_wait("anna") + 0.01
            with pytest.raises(AuthError):
                login("anna", "wrong")
        assert auth.MAX_LOGIN_DELAY_S - 1 < records.auth.login_wait("anna") <= auth.MAX_LOGIN_DELAY_S
        clock.offset += auth.MAX_LOGIN_DELAY_S
        assert login("Anna", "Operator1").id == station.anna.id  # a success clears the count
        assert records.auth.login_wait("anna") == 0
        actions = [e.action for e in reversed(records.audit_log(subject="login:anna", limit=None))]
        assert actions.count("login_failed") == 35 and actions.count("login_refused") == 2
        assert actions[-1] == "login_ok"
        ok = records.audit_log(subject="login:anna")[0]
        assert ok.user_id == station.anna.id and abs(ok.at.timestamp() - clock()) < 60


def test_many_names_tried_at_one_station_are_throttled_too(station):
    clock = _Clock()
    with RecordsService(station.project.root, hasher=FAST, clock=clock) as records:
        for i in range(auth.FREE_FAILURES_PER_STATION + 1):
            with pytest.raises(AuthError, match="wrong user name"):
                records.auth.authenticate(f"guess{i}", "Password1")
        with pytest.raises(LoginThrottled):
            records.auth.authenticate("someone-new", "Password1")
        assert records.audit_log(subject="login:someone-new")[0].action == "login_refused"
        assert records.audit_log(subject="login:guess0")[0].user_id is None


class _CountingHasher(PasswordHasher):
    """The real Argon2id hasher with the app's parameters, counting what it does."""

    def __init__(self):
        super().__init__()
        self.hashes = self.verifies = 0

    def hash(self, *args, **kwargs):
        self.hashes += 1
        return super().hash(*args, **kwargs)

    def verify(self, *args, **kwargs):
        self.verifies += 1
        return super().verify(*args, **kwargs)


def test_an_unknown_name_costs_exactly_what_a_known_one_does_from_the_first_try(station):
    hasher = _CountingHasher()
    with RecordsService(station.project.root, hasher=hasher) as records:
        records.auth.set_password(station.boss, station.anna.id, "Operator1")  # now stored with the defaults
        hasher.hashes = hasher.verifies = 0
        with pytest.raises(AuthError, match="^wrong user name or password$"):
            records.auth.authenticate("nobody", "Operator1")  # the first try, in a fresh service
        assert (hasher.hashes, hasher.verifies) == (0, 1)
        with pytest.raises(AuthError, match="^wrong user name or password$"):
            records.auth.authenticate("anna", "Operator2")
        assert (hasher.hashes, hasher.verifies) == (0, 2)
