"""Accounts, permissions, labels, the threshold from labels, model versions: the use cases, without Qt."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
from argon2 import PasswordHasher

from anomalyapp.core.errors import AppError, DataError
from anomalyapp.core.types import Prediction
from anomalyapp.services import auth
from anomalyapp.services.auth import AuthError, PermissionDenied
from anomalyapp.services.records import InspectionQuery, RecordsService, verdict_for

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # tests only: the app uses the defaults


@pytest.fixture
def records(tmp_path):
    root = tmp_path / "project"
    (root / "models" / "m1").mkdir(parents=True)
    (root / "models" / "m2").mkdir(parents=True)
    with RecordsService(root, hasher=FAST) as service:
        yield service


@pytest.fixture
def people(records):
    boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
    anna = records.auth.add_user(boss, "Anna", "Operator1", "operator")
    return SimpleNamespace(boss=boss, anna=anna)


def _results(tmp_path, scores):
    out = []
    for i, score in enumerate(scores):
        path = tmp_path / f"img_{i:03d}.png"
        path.write_bytes(f"image {i}".encode())
        out.append(SimpleNamespace(path=path, prediction=Prediction(score, score * 10, np.zeros((2, 2)))))
    return out


# --------------------------------------------------------------------------------------------------
# accounts


def test_password_policy_says_what_is_missing():
    with pytest.raises(AuthError) as info:
        auth.check_password_policy("abc")
    message = str(info.value)
    assert "at least 8 characters" in message and "an upper-case letter" in message and "a digit" in message
    assert "lower-case" not in message
    with pytest.raises(AuthError, match="needs a lower-case letter$"):
        auth.check_password_policy("PASSWORD12")
    auth.check_password_policy("Passw0rd")


def test_first_supervisor_then_only_supervisors_add_accounts(records):
    assert records.auth.needs_first_user()
    with pytest.raises(AuthError, match="upper-case"):
        records.auth.create_first_supervisor("Maria", "weakpass1")
    boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
    assert boss.role == "supervisor" and not records.auth.needs_first_user()
    with pytest.raises(AuthError, match="already has accounts"):
        records.auth.create_first_supervisor("Eve", "Supervisor1")


def test_user_names_are_unique_ignoring_case(records, people):
    with pytest.raises(AuthError, match="already exists"):
        records.auth.add_user(people.boss, "ANNA", "Operator2", "operator")
    with pytest.raises(AuthError, match="already exists"):
        records.auth.add_user(people.boss, "  maria ", "Operator2", "operator")


def test_authenticate_with_the_default_argon2_hasher(tmp_path):
    with RecordsService(tmp_path) as service:
        service.auth.create_first_supervisor("Maria", "Supervisor1")
        stored = service.store.credentials("maria")[1]
        assert stored.startswith("$argon2id$") and "Supervisor1" not in stored
        assert service.auth.authenticate("MARIA", "Supervisor1").name == "Maria"


def test_wrong_password_unknown_name_and_deactivated_account_fail_alike(records, people):
    assert records.auth.authenticate("anna", "Operator1") == people.anna
    messages = []
    for name, password in (("Anna", "Operator2"), ("Nobody", "Operator1")):
        with pytest.raises(AuthError) as info:
            records.auth.authenticate(name, password)
        messages.append(str(info.value))
    records.auth.deactivate_user(people.boss, people.anna.id)
    with pytest.raises(AuthError) as info:
        records.auth.authenticate("Anna", "Operator1")
    messages.append(str(info.value))
    assert messages == ["wrong user name or password"] * 3


def test_passwords_roles_and_the_last_supervisor(records, people):
    records.auth.set_password(people.anna, people.anna.id, "Newpass22", old_password="Operator1")
    assert records.auth.authenticate("Anna", "Newpass22")
    with pytest.raises(AuthError, match="current password is wrong"):
        records.auth.set_password(people.anna, people.anna.id, "Newpass33", old_password="nope")
    with pytest.raises(PermissionDenied, match="operator Anna may not manage users"):
        records.auth.set_password(people.anna, people.boss.id, "Hijack123")
    with pytest.raises(AuthError, match="last active supervisor"):
        records.auth.set_role(people.boss, people.boss.id, "operator")
    with pytest.raises(AuthError, match="last active supervisor"):
        records.auth.deactivate_user(people.boss, people.boss.id)
    records.auth.set_role(people.boss, people.anna.id, "supervisor")
    assert records.store.user(people.anna.id).is_supervisor
    actions = {e.action for e in records.audit_log()}
    assert {"user_added", "password_changed", "role_changed"} <= actions


# --------------------------------------------------------------------------------------------------
# permissions


def test_permission_table_is_explicit():
    assert auth.PERMISSIONS["operator"] == {"inspect", "label"}
    assert {"train", "change_threshold", "rollback", "manage_users", "apply_threshold",
            "switch_single_user"} <= auth.PERMISSIONS["supervisor"]


def test_operator_cannot_change_threshold_model_or_users(records, people, tmp_path):
    v1 = records.add_version("m1", None, "trained", people.boss)
    anna = people.anna
    before = (len(records.versions()), len(records.audit_log(limit=None)), len(records.auth.users()))

    with pytest.raises(PermissionDenied, match="^operator Anna may not change the threshold$"):
        auth.require(anna, auth.CHANGE_THRESHOLD)
    with pytest.raises(PermissionDenied, match="operator Anna may not apply a new threshold"):
        records.apply_threshold(0.6, anna)
    with pytest.raises(PermissionDenied, match="operator Anna may not roll the model back"):
        records.rollback(v1.id, anna)
    with pytest.raises(PermissionDenied, match="operator Anna may not train or change the model"):
        records.add_version("m2", v1.id, "trained", anna)
    with pytest.raises(PermissionDenied, match="operator Anna may not train or change the model"):
        records.add_correction("m2", v1.id, "marked good: 000.png", anna)
    with pytest.raises(PermissionDenied, match="operator Anna may not manage users"):
        records.auth.add_user(anna, "Bob", "Operator2", "operator")
    with pytest.raises(PermissionDenied, match="manage users"):
        records.auth.set_role(anna, anna.id, "supervisor")
    with pytest.raises(PermissionDenied, match="manage users"):
        records.auth.deactivate_user(anna, people.boss.id)
    with pytest.raises(PermissionDenied, match="switch single-user mode"):
        records.auth.set_single_user_mode(anna, True)
    with pytest.raises(PermissionDenied, match="change project settings"):
        records.set_setting("anything", "1", anna)

    assert (len(records.versions()), len(records.audit_log(limit=None)), len(records.auth.users())) == before
    assert records.current_version() == v1
    assert records.store.user(anna.id).role == "operator"
    # what an operator may do
    (record,) = records.record_results(_results(tmp_path, [0.7]), anna)
    assert records.label(record.id, "NG", "scratch", None, anna).user_id == anna.id


def test_nobody_logged_in_and_deactivated_users_may_do_nothing(records, people):
    with pytest.raises(PermissionDenied, match="log in to label"):
        records.label(1, "OK", user=None)
    records.auth.deactivate_user(people.boss, people.anna.id)
    gone = records.store.user(people.anna.id)
    with pytest.raises(PermissionDenied, match="deactivated"):
        auth.require(gone, auth.INSPECT)


def test_single_user_mode_logs_in_the_supervisor_who_switched_it_on(records, people):
    assert records.auth.auto_login() is None
    records.auth.set_single_user_mode(people.boss, True)
    assert records.auth.single_user_mode()
    assert records.auth.auto_login() == people.boss
    entries = records.audit_log(subject="setting:single_user")
    assert entries[0].action == "setting_changed" and entries[0].new_value == "1"
    # it lapses when that account can no longer supervise
    second = records.auth.add_user(people.boss, "Chris", "Supervisor2", "supervisor")
    records.auth.set_role(second, people.boss.id, "operator")
    assert records.auth.auto_login() is None
    records.auth.set_single_user_mode(second, False, password="Supervisor2")
    assert not records.auth.single_user_mode()
    assert records.store.get_setting(auth.SINGLE_USER_ID) is None


# --------------------------------------------------------------------------------------------------
# records, labels, threshold


def test_record_results_judges_hashes_and_skips_unreadable(records, people, tmp_path):
    results = _results(tmp_path, [0.2, 0.45, 0.7])
    results.append(SimpleNamespace(path=tmp_path / "broken.png", prediction=None))
    records.set_threshold(people.boss, 0.5, 0.4)
    saved = records.record_results(results, people.anna, source="camera")
    assert [r.verdict for r in saved] == ["OK", "Review", "NG"]
    assert saved[0].content_sha256 == hashlib.sha256(b"image 0").hexdigest()
    assert all(r.source == "camera" and r.user_id == people.anna.id for r in saved)
    assert records.query(InspectionQuery(verdict="Review"))[0].raw_score == pytest.approx(4.5)
    assert verdict_for(0.5, 0.5) == "NG" and verdict_for(0.49, 0.5) == "OK"


def test_summary_counts_and_confusion_matrix(records, people, tmp_path):
    records.set_threshold(people.boss, 0.5, 0.4)
    saved = records.record_results(_results(tmp_path, [0.1, 0.2, 0.45, 0.6, 0.7, 0.8]), people.anna)
    for record, label in zip(saved, ["OK", "NG", "OK", "OK", "NG", None]):
        if label:
            records.label(record.id, label, user=people.anna)
    summary = records.summary()
    assert summary.total == 6
    assert summary.by_verdict == {"OK": 2, "Review": 1, "NG": 3}
    assert summary.by_label == {"OK": 3, "NG": 2, "unlabelled": 1}
    assert summary.confusion["OK"] == {"OK": 1, "Review": 1, "NG": 1}
    assert summary.confusion["NG"] == {"OK": 1, "Review": 0, "NG": 1}
    assert summary.matrix == [[2, 1], [1, 1]]
    assert (summary.false_rejects, summary.escapes) == (1, 1)
    assert summary.ng_rate == pytest.approx(0.5)


def test_labels_propose_the_f1_optimal_threshold(records, people, tmp_path):
    version = records.add_version("m1", None, "trained", people.boss)
    ok_scores, ng_scores = [0.2, 0.3, 0.35, 0.45, 0.52], [0.6, 0.7, 0.9]
    saved = records.record_results(_results(tmp_path, ok_scores + ng_scores), people.anna)
    for record in saved:
        records.label(record.id, "NG" if record.score >= 0.6 else "OK", user=people.anna)
    # an unlabelled inspection and one of another model do not count
    (tmp_path / "more").mkdir()
    records.record_results(_results(tmp_path / "more", [0.99]), people.anna)
    records.add_version("m2", None, "trained", people.boss)
    (foreign,) = records.record_results(_results(tmp_path / "more", [0.1]), people.anna)
    records.label(foreign.id, "NG", user=people.anna)
    records.rollback(version.id, people.boss)

    proposal = records.threshold_from_labels()
    assert (proposal.labelled, proposal.labelled_ng, proposal.current_threshold) == (8, 3, 0.5)
    assert proposal.precision == pytest.approx(0.75) and proposal.recall == 1.0
    assert proposal.f1 == pytest.approx(2 * 0.75 / 1.75)
    assert proposal.confusion_matrix == [[4, 1], [0, 3]]
    assert proposal.proposed_threshold == pytest.approx(0.56)  # midway between 0.52 (OK) and 0.6 (NG)
    assert (proposal.proposed_precision, proposal.proposed_recall, proposal.proposed_f1) == (1.0, 1.0, 1.0)
    assert records.threshold_from_labels(0.65).recall == pytest.approx(2 / 3)


def test_threshold_proposal_needs_both_labels(records, people, tmp_path):
    (record,) = records.record_results(_results(tmp_path, [0.7]), people.anna)
    records.label(record.id, "NG", user=people.anna)
    proposal = records.threshold_from_labels()
    assert proposal.proposed_threshold is None and "one labelled OK" in proposal.message


def test_with_no_part_labelled_ng_recall_is_not_measured_rather_than_zero(records, people, tmp_path):
    for record in records.record_results(_results(tmp_path, [0.3, 0.45, 0.48]), people.anna):
        records.label(record.id, "OK", user=people.anna)
    for proposal in (records.threshold_from_labels(), records.threshold_from_labels(target_false_reject_rate=0.01)):
        assert (proposal.labelled, proposal.labelled_ng) == (3, 0)
        assert proposal.recall is None and proposal.precision is None and proposal.f1 is None
    # The rate's proposal still meets the target on the good parts, and says what it cannot measure.
    assert proposal.proposed_threshold > 0.48 and proposal.proposed_false_reject_rate == 0.0
    assert proposal.proposed_recall is None and "label defects to measure recall" in proposal.message


def test_apply_threshold_creates_a_version_and_audit_rows(records, people):
    with pytest.raises(AppError, match="train a model first"):
        records.apply_threshold(0.56, people.boss)
    v1 = records.add_version("m1", None, "trained", people.boss)
    v2 = records.apply_threshold(0.56, people.boss)
    assert (v2.parent_id, v2.folder, v2.change, v2.threshold) == (v1.id, "m1", "threshold 0.560", 0.56)
    assert records.current_version() == v2
    assert [v.id for v in records.versions()] == [v1.id, v2.id]
    (added,) = records.audit_log(subject=f"model_version:{v2.id}")
    assert added.action == "model_version_added" and added.user_id == people.boss.id
    current = records.audit_log(subject="setting:current_model_version")[0]
    assert (current.old_value, current.new_value) == (str(v1.id), str(v2.id))
    with pytest.raises(AppError, match="positive"):
        records.apply_threshold(float("nan"), people.boss)


def test_rollback_returns_to_an_earlier_version(records, people):
    v1 = records.add_version("m1", None, "trained", people.boss)
    v2 = records.add_version("m2", v1.id, "false positive added: 000.png", people.boss)
    assert records.current_version() == v2
    assert records.rollback(v1.id, people.boss) == v1
    assert records.current_version() == v1
    entry = records.audit_log(subject="setting:current_model_version")[0]
    assert (entry.action, entry.old_value, entry.new_value, entry.user_id) == ("rollback", str(v2.id), str(v1.id),
                                                                              people.boss.id)
    with pytest.raises(AppError, match="no model version 42"):
        records.rollback(42, people.boss)
    (records.root / "models" / "m2").rmdir()
    with pytest.raises(DataError, match="does not exist"):
        records.rollback(v2.id, people.boss)
    with pytest.raises(DataError, match="does not exist"):
        records.add_version("m9", None, "trained", people.boss)


def test_a_correction_is_a_version_that_keeps_the_threshold(records, people):
    v1 = records.add_version("m1", None, "trained", people.boss)
    v2 = records.apply_threshold(0.58, people.boss)
    with pytest.raises(PermissionDenied, match="operator Anna may not train or change the model"):
        records.add_correction("m2", v2.id, "marked good: 000.png", people.anna)
    v3 = records.add_correction("m2", v2.id, "marked good: 000.png", people.boss)
    assert (v3.parent_id, v3.folder, v3.threshold, v3.change) == (v2.id, "m2", 0.58, "marked good: 000.png")
    assert records.current_version() == v3
    assert records.rollback(v1.id, people.boss) == v1


def test_label_history_keeps_every_correction(records, people, tmp_path):
    (record,) = records.record_results(_results(tmp_path, [0.7]), people.anna)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    records.label(record.id, "NG", "scratch", png, people.anna)
    records.label(record.id, "OK", "reflection, not a scratch", None, people.boss)
    history = records.label_history(record.id)
    assert [(h.label, h.user_id) for h in history] == [("NG", people.anna.id), ("OK", people.boss.id)]
    assert history[0].region_png == png
    assert records.query(InspectionQuery(label="OK"))[0].id == record.id
    with pytest.raises(AppError, match="OK or NG"):
        records.label(record.id, "bad", user=people.anna)


def test_missing_project_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        RecordsService(tmp_path / "nope")


# ---------------------------------------------------------------------- a good image that is not good, set aside
def test_a_good_image_is_set_aside_beside_the_good_images_by_someone_who_may_train(records, people, tmp_path):
    good = tmp_path / "bottle" / "train" / "good"
    good.mkdir(parents=True)
    for name in ("000.png", "001.png"):
        (good / name).write_bytes(b"png " + name.encode())

    with pytest.raises(PermissionDenied):
        records.set_aside_good_image(good / "001.png", good, people.anna)  # an operator may not change the training
    assert (good / "001.png").is_file()

    moved = records.set_aside_good_image(good / "001.png", good, people.boss, reason="white blob")
    assert moved == tmp_path / "bottle" / "set_aside" / "001.png" and moved.read_bytes() == b"png 001.png"
    assert not (good / "001.png").exists() and (good / "000.png").is_file()
    entry = records.audit_log(subject=str(good / "001.png"))[0]
    assert entry.action == "good_image_set_aside" and entry.new_value == f"{moved} (white blob)"

    # Nothing is overwritten, and only a file among the good images can go.
    (good / "001.png").write_bytes(b"another part")
    with pytest.raises(DataError, match="already exists"):
        records.set_aside_good_image(good / "001.png", good, people.boss)
    assert (good / "001.png").read_bytes() == b"another part" and moved.read_bytes() == b"png 001.png"
    with pytest.raises(DataError, match="not in the good images"):
        records.set_aside_good_image(moved, good, people.boss)
    with pytest.raises(DataError, match="not a file"):
        records.set_aside_good_image(good / "gone.png", good, people.boss)


def test_an_audit_entry_about_an_inspection_names_the_part(records, people, tmp_path):
    folder = tmp_path / "line" / "scratch"
    folder.mkdir(parents=True)
    result = _results(folder, [0.7])[0]
    saved = records.record_results([result], people.anna)[0]
    records.label(saved.id, "NG", user=people.anna)
    entry = next(e for e in records.audit_log() if e.action == "label_added")
    assert entry.subject == f"inspection:{saved.id}"
    assert records.describe_subject(entry.subject) == f"inspection {saved.id}: scratch/img_000.png"
    assert records.describe_subject("inspection:99999") == "inspection 99999: no longer in the records"
    assert records.describe_subject("setting:threshold_in_use") == "setting:threshold_in_use"


def test_rollback_restores_the_versions_review_band_not_the_one_in_use(tmp_path, patchcore_model, autoencoder_model):
    import shutil

    from anomalyapp.services.project import calibrated_band

    root = tmp_path / "project"
    for name, model in (("pc", patchcore_model), ("ae", autoencoder_model)):
        shutil.copytree(model, root / "models" / name)
    bands = {name: calibrated_band(root / "models" / name) for name in ("pc", "ae")}
    assert None not in bands.values() and bands["pc"] != pytest.approx(bands["ae"], abs=1e-3)
    with RecordsService(root, hasher=FAST) as records:
        boss = records.auth.create_first_supervisor("Maria", "Supervisor1")
        v1 = records.add_version("pc", None, "trained", boss, uncertain_low=bands["pc"])
        records.add_version("ae", v1.id, "trained", boss, uncertain_low=bands["ae"])
        assert records.decision_rule() == (0.5, pytest.approx(bands["ae"], abs=1e-3))
        records.rollback(v1.id, boss)
        assert records.decision_rule() == (0.5, pytest.approx(bands["pc"], abs=1e-3))
        entry = records.audit_log(subject="threshold")[0]
        assert entry.new_value.endswith(f"rolled back to version {v1.id}")


def test_rollback_restores_the_rule_the_version_was_last_judged_with(records, people):
    """A supervisor tuned version 1's threshold and band; a retrained version 2 came with its own rule. Rolling
    back to 1 brings back the tuned rule, not the threshold version 1 was recorded with."""
    v1 = records.add_version("m1", None, "trained", people.boss, uncertain_low=0.4)
    records.set_threshold(people.boss, 0.46, 0.41, reason="tuned on the line")
    records.set_threshold(people.boss, 0.47, 0.42, reason="tuned again")
    v2 = records.add_version("m2", v1.id, "trained", people.boss, uncertain_low=0.3)
    assert records.decision_rule() == (0.5, 0.3)
    records.set_threshold(people.boss, 0.55, 0.3)
    records.rollback(v1.id, people.boss)
    assert records.decision_rule() == (0.47, 0.42)
    assert records.rules_last_in_use() == {v1.id: (0.47, 0.42), v2.id: (0.55, 0.3)}
    entry = records.audit_log(subject="threshold")[0]
    assert entry.old_value == "0.550 (review from 0.300)" and entry.new_value.startswith("0.470 (review from 0.420)")
    records.rollback(v2.id, people.boss)  # and forward again: version 2's tuned rule
    assert records.decision_rule() == (0.55, 0.3)
    # A correction version carries the rule over; rolled back to, it has the rule it was left with.
    v3 = records.add_correction("m2", v2.id, "marked good: 000.png", people.boss)
    records.set_threshold(people.boss, 0.52, None)
    records.rollback(v1.id, people.boss)
    records.rollback(v3.id, people.boss)
    assert records.decision_rule() == (0.52, None)
