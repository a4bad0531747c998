"""One domain vocabulary in core: the verdict rule, the normalised threshold, the verdict colours and the
file hash each exist once, and every layer uses that one."""

from __future__ import annotations

import ast
import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest

from anomalyapp.core.colours import VERDICT_COLOURS
from anomalyapp.core.files import file_sha256
from anomalyapp.core.types import Prediction
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD, SEVERITY, Verdict, Verdicts, verdict_for, verdicts_for

PACKAGE = Path(__file__).resolve().parents[2] / "anomalyapp"


def test_the_rule_with_and_without_an_uncertain_band():
    assert NORMALISED_THRESHOLD == 0.5
    assert [verdict_for(s) for s in (0.0, 0.499, 0.5, 3.0, None, math.nan)] == [
        Verdict.OK, Verdict.OK, Verdict.NG, Verdict.NG, Verdict.ERROR, Verdict.ERROR]
    assert [verdict_for(s, 0.6, review_from=0.4) for s in (0.39, 0.4, 0.59, 0.6)] == [
        Verdict.OK, Verdict.REVIEW, Verdict.REVIEW, Verdict.NG]
    assert verdict_for(0.49, 0.5, 0.5) is Verdict.OK  # an empty band
    assert Verdicts(0.6, 0.4).verdict(0.45) is Verdict.REVIEW


def test_verdicts_are_the_strings_stored_and_shown():
    assert [str(v) for v in Verdict] == ["NG", "Review", "OK", "Error"]  # most severe first
    assert Verdict.REVIEW == "Review" and f"{Verdict.NG}" == "NG"
    assert sorted(Verdict, key=SEVERITY.get, reverse=True) == list(Verdict)
    assert set(VERDICT_COLOURS) == set(Verdict)


def test_vectorised_rule_agrees_with_the_scalar_one():
    rng = np.random.default_rng(1)
    scores = list(rng.uniform(0, 1, 500)) + [None, math.nan, 0.4, 0.5]
    for threshold, low in ((0.5, None), (0.6, 0.4), (0.5, 0.7)):
        assert verdicts_for(scores, threshold, low) == [verdict_for(s, threshold, low) for s in scores]


def test_a_predictions_verdict_is_the_rule():
    prediction = Prediction(score=0.5, raw_score=1.0, anomaly_map=np.zeros((2, 2), np.float32))
    assert prediction.verdict is Verdict.NG and prediction.is_anomalous
    assert Prediction(0.2, 0.4, np.zeros((1, 1), np.float32)).verdict is Verdict.OK


def test_file_sha256(tmp_path):
    path = tmp_path / "part.bin"
    data = bytes(range(256)) * 9000  # spans several read blocks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(OSError):
        file_sha256(tmp_path / "missing.bin")


def _definitions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))


_DEFINED = {path: set(_definitions(ast.parse(path.read_text(encoding="utf-8")))) for path in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("name", ["verdict_for", "Verdicts", "Verdict", "NORMALISED_THRESHOLD", "VERDICT_COLOURS",
                                  "THUMBNAIL_SIZE", "roc_curve", "roc_points", "roc_auc", "file_sha256", "_sha256"])
def test_each_rule_is_defined_once(name):
    places = [str(path.relative_to(PACKAGE)) for path, names in _DEFINED.items() if name in names]
    assert len(places) <= 1, f"{name} is defined in {places}"


def test_no_verdict_colour_outside_core():
    """The verdicts' hex colours are written in core.colours only."""
    fills = {c.fill.lower() for c in VERDICT_COLOURS.values()} | {c.ink.lower() for c in VERDICT_COLOURS.values()}
    problems = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "core":
            continue
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.relative_to(PACKAGE)}: {c}" for c in re.findall(r"#[0-9a-fA-F]{6}\b", text)
                     if c.lower() in fills]
    assert not problems, problems


def test_the_anomaly_colour_map_is_named_in_core_only():
    """The viewer and the written overlays colour a score alike because both read core's name for the map."""
    problems = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "core":
            continue
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.relative_to(PACKAGE)}: {m}" for m in re.findall(r"[\"']turbo[\"']|applyColorMap\([^)]*COLORMAP_\w+",
                                                                            text)]
    assert not problems, problems
