"""Checks the issue's targets, as ratios between variants measured in the same run.

Every check returns its numbers and a pass flag; nothing is rounded in the caller's favour.
"""

from __future__ import annotations

from typing import Any

from benchmarks.analysis import meets_target

Runs = dict[str, dict[str, dict[str, Any]]]  # scenario -> variant -> figures
ADAPTIVE = "adaptive"
SIZE_1 = "fixed-1"
THROUGHPUT_SHARE = 0.9
DRIFT_LOSS_RATIO = 1.25
DRIFT_THROUGHPUT_RATIO = 10.0


def _fixed(variants: dict[str, Any]) -> list[str]:
    return [name for name in variants if name != ADAPTIVE]


def latency_check(runs: Runs, scenarios: list[str]) -> dict[str, Any]:
    """Adaptive meets the target wherever the best fixed size does.

    >>> ok, late = {"within_target": 1.0}, {"within_target": 0.5}
    >>> latency_check({"s": {"fixed-1": ok, "adaptive": late}}, ["s"])["pass"]
    False
    """
    rows = []
    for name in scenarios:
        variants = runs[name]
        meeting = [v for v in _fixed(variants) if meets_target(variants[v])]
        adaptive = meets_target(variants[ADAPTIVE])
        rows.append(
            {
                "scenario": name,
                "fixed_meeting": meeting,
                "adaptive_meets": adaptive,
                "pass": adaptive or not meeting,
            }
        )
    return {"rows": rows, "pass": all(r["pass"] for r in rows)}


def throughput_check(runs: Runs, steady: list[str], max_run: str) -> dict[str, Any]:
    """Adaptive throughput ≥ 90 % of the best fixed size that meets the target.

    Per steady rate the processed events/s are compared; and at the highest rate some fixed
    size still serves within target, the maximum throughput (pre-produced backlog) of the best
    such size is compared with adaptive's.
    """
    rows = []
    top_meeting: list[str] = []
    for name in steady:
        variants = runs[name]
        meeting = [v for v in _fixed(variants) if meets_target(variants[v])]
        if not meeting:
            continue
        top_meeting = meeting
        best = max(meeting, key=lambda v: variants[v]["throughput"])
        rows.append(_ratio_row(name, best, variants))
    if top_meeting:
        best = max(top_meeting, key=lambda v: runs[max_run][v]["throughput"])
        rows.append(_ratio_row(max_run, best, runs[max_run]))
    return {"rows": rows, "pass": bool(rows) and all(r["ratio"] >= THROUGHPUT_SHARE for r in rows)}


def _ratio_row(scenario: str, best: str, variants: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = variants[ADAPTIVE]["throughput"], variants[best]["throughput"]
    return {
        "scenario": scenario,
        "best_fixed": best,
        "best_throughput": theirs,
        "adaptive_throughput": ours,
        "ratio": round(ours / theirs, 3) if theirs else 0.0,
    }


def drift_check(runs: Runs, drift_run: str, max_run: str) -> dict[str, Any]:
    """After drift: adaptive's accuracy loss ≤ 1.25x size 1's, its throughput ≥ 10x size 1's.

    >>> runs = {"d": {"fixed-1": {"drift_loss": 100.0, "throughput": 900.0},
    ...               "adaptive": {"drift_loss": 110.0, "throughput": 3000.0}},
    ...         "m": {"fixed-1": {"throughput": 1000.0}, "adaptive": {"throughput": 20000.0}}}
    >>> c = drift_check(runs, "d", "m")
    >>> c["loss_ratio"], c["throughput_ratio"], c["pass"]
    (1.1, 20.0, True)
    """
    drift, top = runs[drift_run], runs[max_run]
    ours, size1 = drift[ADAPTIVE]["drift_loss"], drift[SIZE_1]["drift_loss"]
    loss_ratio = ours / size1 if size1 > 0 else (1.0 if ours == 0 else float("inf"))
    throughput_ratio = top[ADAPTIVE]["throughput"] / max(top[SIZE_1]["throughput"], 1e-9)
    return {
        "adaptive_loss": ours,
        "size1_loss": size1,
        "loss_ratio": round(loss_ratio, 3),
        "throughput_ratio": round(throughput_ratio, 2),
        "drift_scenario_throughput_ratio": round(
            drift[ADAPTIVE]["throughput"] / max(drift[SIZE_1]["throughput"], 1e-9), 2
        ),
        "pass": loss_ratio <= DRIFT_LOSS_RATIO and throughput_ratio >= DRIFT_THROUGHPUT_RATIO,
    }
