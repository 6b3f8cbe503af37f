"""The benchmark figures: drawn from the recorded results and embedded in benchmarks/README.md."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from benchmarks.figures import FIGURE_FILES, figures, main

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def recorded() -> dict:
    return orjson.loads((BENCHMARKS / "results/latest.json").read_bytes())


def test_every_figure_is_drawn_from_the_recorded_results() -> None:
    drawn = figures(recorded())
    assert set(drawn) == set(FIGURE_FILES)
    latency = drawn["latency_vs_rate.svg"]
    for variant in ("fixed-1", "fixed-32", "fixed-256", "fixed-2048", "adaptive"):
        assert f">{variant}</text>" in latency  # a legend entry per variant
    assert "target 100 ms" in latency
    assert "the pattern changes after event 12,000" in drawn["drift_recovery.svg"]


def test_the_committed_figures_match_the_results(tmp_path: Path) -> None:
    main(["--out", str(tmp_path)])
    for name in FIGURE_FILES:
        committed = (BENCHMARKS / "figures" / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == committed, (
            f"{name} is stale: run python -m benchmarks.figures"
        )


def test_readme_embeds_every_figure() -> None:
    readme = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    embedded = re.findall(r"!\[[^\]]+\]\((figures/[^)]+)\)", readme)
    assert sorted(embedded) == sorted(f"figures/{name}" for name in FIGURE_FILES)


def test_results_without_a_scenario_leave_its_figure_out() -> None:
    results = recorded()
    del results["runs"]["drift"]
    assert "drift_recovery.svg" not in figures(results)
    assert figures({}) == {}
