"""The benchmark runs end to end and its ratios are computed from the figures it reports."""

from __future__ import annotations

import pytest

from anomalyapp.core.types import drain
from anomalyapp.services.benchmark import BenchRequest, run_benchmark, write_markdown


def test_benchmark_reports_predict_next_to_its_floors(demo_line, tmp_path):
    request = BenchRequest(data=demo_line, backbones=["efficientnet_lite0"], repeats=3, scale=False, image_size=128,
                           line_300=False)
    result = drain(run_benchmark(request))
    figures = result["backbones"]["efficientnet_lite0"]
    assert figures["weights"] == "pretrained" and figures["bank_size"] > 0
    for key in ("predict_ms", "floor_ms", "backbone_ms", "preprocess_backbone_ms"):
        assert figures[key] > 0
    assert figures["latency_ratio"] == pytest.approx(figures["predict_ms"] / figures["floor_ms"])
    assert figures["ratio_to_backbone"] == pytest.approx(figures["predict_ms"] / figures["backbone_ms"])
    # No comparison of the timings themselves: on a loaded 2-core machine one timed call can beat another
    # that does less. The figures are checked by `anomalyapp bench`, which prints them and their ratios.
    assert result["scaled_10x"] == {} and result["line_300"] == {}
    # The fit is split into its stages, the features beside their floor (the bare backbone per image).
    assert figures["features_s"] + figures["coreset_s"] + figures["bank_s"] == pytest.approx(figures["fit_s"], rel=0.05)
    assert figures["features_floor_s"] == pytest.approx(figures["floor_ms"] * figures["train_images"] / 1000.0)

    markdown = tmp_path / "benchmarks.md"
    write_markdown(result, markdown, "anomalyapp bench --no-scale")
    text = markdown.read_text(encoding="utf-8")
    assert "`anomalyapp bench --no-scale`" in text and "| efficientnet_lite0 | pretrained |" in text
    assert "features floor s" in text
