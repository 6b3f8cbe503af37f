"""The run recorder and the HTML report drawn from what it recorded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from streamlearn.cli import app
from streamlearn.errors import StreamlearnError
from streamlearn.report import render_report
from streamlearn.run_record import FORMAT, RunRecorder, load_record


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulated_run(seconds: int = 90) -> dict:
    """A fraud pipeline over ``seconds``: a backlog at 40-44 s (late at 42 s), drift at 50 s, a
    replacement at 60 s, a checkpoint every 10 s and a few dead letters."""
    clock = Clock()
    rec = RunRecorder({"fraud": ("classification", 100.0)}, clock=clock, wall=lambda: 1.8e9)
    rng = np.random.default_rng(0)
    version = 0
    for second in range(seconds):
        for tick in range(4):  # four batches a second
            clock.now = second + tick / 4
            rec.on_consumed("fraud", 1000)
            slow = 40 <= second < 45
            latencies = rng.gamma(4, 0.03 if second == 42 else 0.008, size=1000)
            rec.on_predictions("fraud", latencies)
            missed = int((latencies > 0.1).sum())
            if missed:
                rec.on_target_missed("fraud", missed)
            rec.on_batch_closed("fraud", 1000, "deadline" if slow else "size")
            rec.on_batch_size("fraud", 256 if slow else 1000)
            rec.on_learned("fraud", 1000)
            version += 2 if (second == 60 and tick == 0) else 1
            rec.on_model_version("fraud", version)
        rec.on_lag("fraud", {0: 5000 if slow else 100, 1: 50})
        auc = 0.9 - (0.2 if 50 <= second < 60 else 0.0) + 0.001 * (second % 7)
        rec.on_model_score("fraud", {"auc": auc, "logloss": 0.3})
        if second == 50:
            rec.on_drift("fraud")
        if second % 10 == 9:
            rec.on_checkpoint("fraud", 1.8e9 + second)
        if second % 20 == 15:
            rec.on_labels_unmatched("fraud", "past_horizon", 2)
        if second % 30 == 5:
            rec.on_too_late("fraud", 2)
            rec.on_invalid("fraud", "not_json", 3)
            rec.on_invalid("fraud", "missing_field", 1)
    clock.now = float(seconds)
    return rec.record()


@pytest.fixture(scope="module")
def record() -> dict:
    return simulated_run()


# --- the recorder -------------------------------------------------------------------------


def test_record_keeps_one_point_per_second_with_its_figures(record: dict) -> None:
    fraud = record["pipelines"]["fraud"]
    assert record["format"] == FORMAT
    assert [p["t"] for p in fraud["points"]] == list(range(90))
    second = fraud["points"][10]
    assert second["consumed"] == second["predicted"] == 4000
    assert second["batches"] == {"size": [4, 4000]}
    assert second["lag"] == 150
    assert second["scores"] == {"auc": 0.903, "logloss": 0.3}
    assert 10 < second["p50_ms"] < second["p99_ms"] < 100
    assert fraud["points"][42]["p99_ms"] > 100  # the spike
    assert fraud["totals"]["consumed"] == 360_000
    assert fraud["totals"]["invalid"] == {"not_json": 9, "missing_field": 3}
    assert fraud["totals"]["too_late"] == 6


def test_a_caught_up_consumer_records_a_lag_of_zero_not_a_gap() -> None:
    clock = Clock()
    rec = RunRecorder({"fraud": ("classification", 100.0)}, clock=clock, wall=lambda: 1.8e9)
    for second, behind in enumerate([40, 0, 0, 7]):
        clock.now = float(second)
        rec.on_lag("fraud", {0: behind, 1: 0})
    clock.now = 4.0
    points = rec.record()["pipelines"]["fraud"]["points"]
    assert [p.get("lag") for p in points] == [40, 0, 0, 7]


def test_record_marks_drift_replacement_and_checkpoints(record: dict) -> None:
    marks = record["pipelines"]["fraud"]["marks"]
    assert [m["t"] for m in marks if m["kind"] == "drift"] == [50.75]
    assert [(m["t"], m["version"]) for m in marks if m["kind"] == "replacement"] == [(60.0, 242)]
    assert len([m for m in marks if m["kind"] == "checkpoint"]) == 9
    totals = record["pipelines"]["fraud"]["totals"]
    assert (totals["drifts"], totals["replacements"], totals["checkpoints"]) == (1, 1, 9)


def test_run_percentiles_cover_the_whole_run(record: dict) -> None:
    latency = record["pipelines"]["fraud"]["latency_ms"]
    assert 20 < latency["p50"] < 40
    assert latency["p50"] < latency["p90"] < latency["p99"] <= latency["max"]


def test_the_ring_keeps_the_newest_seconds_and_says_how_many_it_dropped() -> None:
    clock = Clock()
    rec = RunRecorder(capacity=10, clock=clock)
    for second in range(25):
        clock.now = second
        rec.on_consumed("p", 1)
    fraud = rec.record()["pipelines"]["p"]
    assert [p["t"] for p in fraud["points"]] == list(range(15, 25))
    assert fraud["points_dropped"] == 15
    assert fraud["totals"]["consumed"] == 25


def test_a_long_idle_gap_keeps_its_newest_seconds() -> None:
    clock = Clock()
    rec = RunRecorder(capacity=5, clock=clock)
    rec.on_consumed("p", 1)
    clock.now = 100.0
    rec.on_consumed("p", 2)
    points = rec.record()["pipelines"]["p"]
    assert [p["t"] for p in points["points"]] == [96, 97, 98, 99, 100]
    assert points["points_dropped"] == 96


def test_a_record_does_not_change_while_pipelines_go_on() -> None:
    rec = RunRecorder(clock=Clock())
    rec.on_invalid("p", "not_json", 1)
    record = rec.record()
    rec.on_invalid("p", "not_json", 1)
    assert record["pipelines"]["p"]["totals"]["invalid"] == {"not_json": 1}
    assert record["pipelines"]["p"]["points"][0]["invalid"] == {"not_json": 1}


def test_idle_seconds_are_empty_points() -> None:
    clock = Clock()
    rec = RunRecorder(clock=clock)
    rec.on_consumed("p", 5)
    clock.now = 3.5
    rec.on_consumed("p", 7)
    assert rec.record()["pipelines"]["p"]["points"] == [
        {"t": 0, "consumed": 5},
        {"t": 1},
        {"t": 2},
        {"t": 3, "consumed": 7},
    ]


def test_a_failure_is_marked_without_secrets() -> None:
    rec = RunRecorder(clock=Clock())
    rec.on_failed("p", "ConnectionError: redis://app:hunter2@cache:6379/0 refused")
    (mark,) = rec.record()["pipelines"]["p"]["marks"]
    assert "hunter2" not in mark["message"]


def test_load_record_refuses_other_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"task": "fraud"}')
    with pytest.raises(StreamlearnError, match="not a run record"):
        load_record(path)


# --- the report ---------------------------------------------------------------------------


def test_report_has_every_section_and_one_image_per_plot(record: dict) -> None:
    page = render_report(record)
    for section in (
        "Throughput and consumer lag",
        "Batch size and triggers",
        "Latency against the target",
        "Model score, drift and replacements",
        "Dead letters",
        "Checkpoints",
        "Totals",
    ):
        assert f"<h3>{section}</h3>" in page
    titles = re.findall(r"<svg[^>]*aria-label=\"([^\"]+)\"", page)
    assert titles == [
        "Events per second",
        "Consumer lag",
        "Batch size and what closed each batch",
        "Latency, event ingest to prediction written",
        "Prequential model score",
        "Dead-lettered events by reason",
        "Unmatched labels by reason",
        "Checkpoint age",
    ]
    assert page.count("<figure>") == len(titles)
    assert '<td>events too late for their aggregates</td><td class="n">6</td>' in page


def test_report_is_self_contained(record: dict) -> None:
    page = render_report(record)
    assert not re.search(r"(src|href)=\"https?:", page)
    assert "<script" not in page and "@import" not in page


def test_summary_says_the_target_held_and_how_the_model_did(record: dict) -> None:
    page = render_report(record)
    summary = re.search(r'<p class="summary"[^>]*>(.*?)</p>', page, re.S)
    assert summary is not None
    text = summary.group(1)
    assert "fraud (classification) consumed 360,000 messages in 90 s" in text
    assert "The latency target of 100 ms held" in text
    assert "AUC ended at 0.905 (from 0.900, lowest 0.700)" in text
    assert "drift detector fired once (first at 50.8 s)" in text
    assert "model was replaced once" in text
    assert "12 messages were dead-lettered (not_json 9, missing_field 3)" in text
    assert "Labels that matched no event: past_horizon 8" in text


def test_score_chart_marks_drift_and_replacement(record: dict) -> None:
    page = render_report(record)
    assert "drift detected at 50.75 s" in page
    assert "model replaced at 60.0 s (version 242)" in page
    assert "target 100 ms" in page  # the target line on the latency chart


def test_summary_says_when_the_target_did_not_hold() -> None:
    clock = Clock()
    rec = RunRecorder({"p": ("classification", 10.0)}, clock=clock)
    rec.on_predictions("p", np.full(100, 0.05))
    rec.on_target_missed("p", 100)
    page = render_report(rec.record())
    assert "The latency target of 10 ms did not hold: 0.00% of 100 predictions" in page
    assert "No prequential score was reported" in page
    assert "No checkpoint was written" in page


def test_recommendation_scores_are_hit_rate_and_ndcg() -> None:
    rec = RunRecorder({"recs": ("recommendation", 200.0)}, clock=Clock())
    rec.on_model_score("recs", {"hit_rate_at_10": 0.21, "ndcg_at_10": 0.12})
    page = render_report(rec.record())
    assert "hit rate@10 ended at 0.210" in page and "NDCG@10 ended at 0.120" in page


# --- the command --------------------------------------------------------------------------


def test_report_command_writes_the_html(tmp_path: Path, record: dict) -> None:
    run = tmp_path / "RUN.json"
    run.write_text(json.dumps(record))
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "r.html" in result.output
    assert "Prequential model score" in (tmp_path / "r.html").read_text()


def test_report_command_writes_next_to_the_record_by_default(tmp_path: Path, record: dict) -> None:
    run = tmp_path / "RUN.json"
    run.write_text(json.dumps(record))
    assert CliRunner().invoke(app, ["report", str(run)]).exit_code == 0
    assert (tmp_path / "RUN.html").is_file()


def test_report_screenshot_in_headless_chromium(tmp_path: Path, record: dict) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not on PATH (Debian package `chromium`)")
    page = tmp_path / "report.html"
    page.write_text(render_report(record), encoding="utf-8")
    # Set STREAMLEARN_REPORT_SCREENSHOT=path.png to keep the screenshot and look at it.
    shot = Path(os.environ.get("STREAMLEARN_REPORT_SCREENSHOT") or tmp_path / "report.png")
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--hide-scrollbars",
            "--window-size=1000,3400",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert shot.stat().st_size > 20_000  # a blank page is a few kB


def test_delayed_labels_get_a_delay_chart_in_days() -> None:
    clock = Clock()
    rec = RunRecorder({"churn": ("classification", 100.0)}, clock=clock, wall=lambda: 1.8e9)
    day = 86_400.0
    for second in range(30):
        clock.now = float(second)
        rec.on_consumed("churn", 100)
        rec.on_learned("churn", 20)
        rec.on_label_delays("churn", np.full(20, 30 * day) + np.arange(20) * 3600.0)
    clock.now = 30.0
    record = rec.record()
    point = record["pipelines"]["churn"]["points"][5]
    assert point["label_delay_p50_s"] == pytest.approx(30 * day + 9.5 * 3600.0)
    page = render_report(record)
    assert "<h3>Delayed labels</h3>" in page
    assert 'aria-label="Delay of the labels learned, after their events"' in page
    assert "days of event time" in page
    # A pipeline whose labels come inline has no such section.
    assert "<h3>Delayed labels</h3>" not in render_report(simulated_run(20))
