"""Every confirmed label counts for the threshold, re-scored by the model in use, across model versions."""

from __future__ import annotations

import shutil

import pytest

from anomalyapp.core.types import drain
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.services import project as projects
from anomalyapp.services.correction import learn_good_images
from anomalyapp.services.evaluation import recall_at_false_reject_rate
from anomalyapp.services.inference import InferenceSession
from anomalyapp.services.label_scores import LabelledScores, rescore_labelled
from anomalyapp.services.records import RecordsService

TARGET = 0.01


def test_labels_of_three_model_versions_all_count_and_the_proposal_meets_the_target(
        patchcore_model, demo_line, tmp_path):
    project = projects.create_project(tmp_path / "line", single_user="boss")
    shutil.copytree(patchcore_model, project.models_dir / "v1")
    test = discover_dataset(demo_line).test
    good = [item.path for item in test if not item.is_anomalous]
    defective = [item.path for item in test if item.is_anomalous]
    # Copies in the project: one of them is changed later, which takes it out of the re-scoring.
    (tmp_path / "parts").mkdir()
    good = [shutil.copy(p, tmp_path / "parts" / f"good_{i}.png") for i, p in enumerate(good)]
    defective = [shutil.copy(p, tmp_path / "parts" / f"ng_{i}.png") for i, p in enumerate(defective)]

    with RecordsService(project.root) as records:
        boss = records.auth.auto_login()
        records.add_version("v1", None, "trained", boss)
        session = InferenceSession(project.models_dir / "v1", device="cpu")
        batches = [(good[0:2], defective[0:2]), (good[2:3], defective[2:5]), (good[3:4], defective[5:8])]
        for number, (ok_parts, ng_parts) in enumerate(batches):
            saved = records.record_results([session.predict_path(p) for p in ok_parts + ng_parts], boss)
            for record in saved:
                records.label(record.id, "OK" if "good_" in record.image_path else "NG", user=boss)
            if number < 2:  # a false-positive fix: a new model version in a new folder
                drain(learn_good_images(session, [ok_parts[0]], project.models_dir, actor=boss))
        assert len({v.folder for v in records.versions()}) == 3
        # Stored scores of the model in use only: the labels of the two earlier versions are lost.
        assert records.threshold_from_labels().labelled == 4

        labelled = drain(rescore_labelled(records, session))
        assert (len(labelled.pairs), labelled.rescored, labelled.left_out) == (12, 12, 0)
        proposal = records.threshold_from_labels(labelled=labelled.pairs, target_false_reject_rate=TARGET)
        assert (proposal.labelled, proposal.labelled_ng) == (12, 8)

        scores = [s for s, _ in labelled.pairs]
        is_ng = [label == "NG" for _, label in labelled.pairs]
        # Meets the target on the labelled good parts (4 of them: none may be rejected) ...
        assert proposal.proposed_false_reject_rate <= TARGET
        assert all(s < proposal.proposed_threshold for s, ng in zip(scores, is_ng) if not ng)
        # ... with the highest recall those scores allow.
        assert proposal.proposed_recall == pytest.approx(recall_at_false_reject_rate(is_ng, scores, TARGET))
        changed = proposal.changes
        current = proposal.current_threshold
        assert changed["good_passed"] == sum(current <= s < proposal.proposed_threshold
                                             for s, ng in zip(scores, is_ng) if not ng)
        assert "would have" in proposal.describe_changes()

        # A file changed since it was inspected, scored by an earlier model: it cannot be compared.
        defective[0].write_bytes(good[1].read_bytes())
        again = drain(rescore_labelled(records, session))
        assert (len(again.pairs), again.left_out) == (11, 1)


def test_the_proposal_keeps_the_current_threshold_when_it_already_meets_the_target(tmp_path):
    from anomalyapp.engine.calibration import threshold_from_labelled

    good, defects = [0.1, 0.2, 0.3, 0.45], [0.6, 0.9]
    assert threshold_from_labelled(good, defects, 0.01, current=0.5) == 0.5  # between 0.45 and 0.6 already
    assert threshold_from_labelled(good, defects, 0.01, current=0.4) == pytest.approx(0.525)
    assert threshold_from_labelled(good, defects, 0.25, current=0.4) == 0.4  # one good of four may be rejected
    assert threshold_from_labelled([], defects, 0.01, current=0.5) is None


def test_the_count_of_labelled_parts_reads_as_a_sentence():
    assert LabelledScores([(0.2, "OK")]).describe() == "1 labelled part scored by the model in use"
    assert LabelledScores([(0.2, "OK"), (0.9, "NG")], left_out=1).describe() == (
        "2 labelled parts scored by the model in use (1 left out: file gone or changed since, scored by another model)")
