"""Draws the recorded batching benchmark as SVG figures for ``benchmarks/README.md``.

``python -m benchmarks.figures`` reads ``benchmarks/results/latest.json`` and writes
``benchmarks/figures/*.svg``: throughput against batch size, p99 latency against offered rate per
variant, and the AUC curve around the drift. Drawn with :mod:`streamlearn.report.svg`, the
run report's plotting, so nothing more is installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from streamlearn.report.svg import Chart, Mark, Series, render

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
FIGURES = HERE / "figures"
_ADAPTIVE = "#d62728"
# Fixed sizes in blues, lighter to darker as the size grows; adaptive stands out in red.
_FIXED = ("#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b")


def _color(variant: str, variants: list[str]) -> str:
    """A variant's line colour.

    >>> _color("adaptive", []), _color("fixed-32", ["fixed-1", "fixed-32"])
    ('#d62728', '#6baed6')
    """
    if not variant.startswith("fixed-"):
        return _ADAPTIVE
    fixed = [v for v in variants if v.startswith("fixed-")]
    return _FIXED[min(fixed.index(variant), len(_FIXED) - 1)]


def _variants(runs: Mapping[str, Any]) -> list[str]:
    """Fixed sizes smallest first, then adaptive, as the harness names them.

    >>> _variants({"adaptive": {}, "fixed-256": {}, "fixed-1": {}})
    ['fixed-1', 'fixed-256', 'adaptive']
    """
    fixed = sorted((v for v in runs if v.startswith("fixed-")), key=lambda v: int(v[6:]))
    return fixed + [v for v in runs if not v.startswith("fixed-")]


def throughput_vs_batch_size(results: Mapping[str, Any]) -> Chart | None:
    """Events/s at maximum throughput (a backlog) against the mean batch size.

    >>> runs = {"fixed-1": {"mean_batch": 1, "throughput": 200},
    ...         "fixed-32": {"mean_batch": 32, "throughput": 4400},
    ...         "adaptive": {"mean_batch": 2000, "throughput": 42000}}
    >>> chart = throughput_vs_batch_size({"runs": {"max-throughput": runs}})
    >>> [(s.name, list(s.xs)) for s in chart.series]
    [('fixed sizes', [1, 32]), ('adaptive', [2000])]
    """
    runs = results.get("runs", {}).get("max-throughput")
    if not runs:
        return None
    fixed = [runs[v] for v in _variants(runs) if v.startswith("fixed-")]
    adaptive = [runs[v] for v in runs if not v.startswith("fixed-")]
    return Chart(
        "Maximum throughput against batch size (backlog, 1 partition)",
        "mean events per batch",
        "events per second",
        [
            Series(
                "fixed sizes",
                [r["mean_batch"] for r in fixed],
                [r["throughput"] for r in fixed],
                color=_FIXED[3],
            ),
            Series(
                "adaptive",
                [r["mean_batch"] for r in adaptive],
                [r["throughput"] for r in adaptive],
                color=_ADAPTIVE,
                points=True,
            ),
        ],
        log_x=True,
        log_y=True,
    )


def latency_vs_rate(results: Mapping[str, Any]) -> Chart | None:
    """p99 latency against the offered rate of each steady scenario, one line per variant."""
    steady = {k: v for k, v in results.get("runs", {}).items() if k.startswith("steady-")}
    if not steady:
        return None
    scenarios = sorted(steady, key=lambda k: int(k.split("-")[1]))
    variants = _variants(steady[scenarios[0]])
    series = []
    for variant in variants:
        runs = [steady[s][variant] for s in scenarios if variant in steady[s]]
        series.append(
            Series(
                variant,
                [r["offered_rate"] for r in runs],
                [r.get("p99_ms") for r in runs],
                color=_color(variant, variants),
            )
        )
    target = results.get("latency_target_ms")
    return Chart(
        "p99 latency against offered rate, per variant",
        "offered events per second",
        "p99 latency, ms",
        series,
        hlines=[Mark(target, f"target {target:g} ms", "#444")] if target else [],
        log_x=True,
        log_y=True,
    )


def drift_recovery(results: Mapping[str, Any]) -> Chart | None:
    """AUC of the trailing events every 1 000 events, per variant, with the drift marked."""
    runs = results.get("runs", {}).get("drift")
    if not runs or not any(r.get("auc_curve") for r in runs.values()):
        return None
    series, variants = [], _variants(runs)
    for variant in variants:
        curve = runs[variant].get("auc_curve") or []
        series.append(
            Series(
                variant,
                [x for x, _ in curve],
                [y for _, y in curve],
                color=_color(variant, variants),
            )
        )
    at = results.get("plan", {}).get("drift_before")
    return Chart(
        "AUC around an abrupt drift (trailing 2 000 events)",
        "events processed",
        "AUC",
        series,
        marks=[Mark(at, "drift", "#444", f"the pattern changes after event {at:,}")] if at else [],
    )


FIGURE_FILES = {
    "throughput_vs_batch_size.svg": throughput_vs_batch_size,
    "latency_vs_rate.svg": latency_vs_rate,
    "drift_recovery.svg": drift_recovery,
}
"""Each figure's file name and the function drawing it (``None`` where the data lacks it)."""


def figures(results: Mapping[str, Any]) -> dict[str, str]:
    """Every figure the results have data for, as SVG text by file name."""
    drawn = {name: draw(results) for name, draw in FIGURE_FILES.items()}
    return {name: render(chart) for name, chart in drawn.items() if chart is not None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="benchmark results JSON")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the SVG files")
    args = parser.parse_args(argv)
    results = orjson.loads(args.results.read_bytes())
    args.out.mkdir(parents=True, exist_ok=True)
    for name, svg in figures(results).items():
        (args.out / name).write_text(svg + "\n", encoding="utf-8")
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
