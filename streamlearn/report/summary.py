"""Says in one paragraph how a recorded pipeline did: whether its latency target held, its model.

Pure: a pipeline's part of a run record in, plain sentences out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamlearn.report.charts import headline_metrics, metric_title

HELD_SHARE = 0.99
"""The target holds when at least this share of predictions was written within it."""


def _count(n: float, one: str, many: str) -> str:
    """``n`` with the right noun.

    >>> _count(1, "time", "times"), _count(2500, "event", "events")
    ('once', '2,500 events')
    """
    if one == "time":
        return {1: "once", 2: "twice"}.get(int(n), f"{int(n):,} times")
    return f"{int(n):,} {one if n == 1 else many}"


def _reasons(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items(), key=lambda i: -i[1]))


def latency_sentence(data: Mapping[str, Any]) -> str:
    """Whether the latency target held, with the run's share within it and its p99.

    >>> print(latency_sentence({"latency_target_ms": 100.0, "latency_ms": {"p99": 42.0},
    ...                   "totals": {"predicted": 1000, "missed": 2}, "points": []}))
    ... # doctest: +NORMALIZE_WHITESPACE
    The latency target of 100 ms held: 99.80% of 1,000 predictions were written within it,
    p99 42 ms over the run.
    """
    totals, target = data["totals"], data.get("latency_target_ms")
    predicted = totals["predicted"]
    if not predicted:
        return "No predictions were written, so latency was not measured."
    p99 = (data.get("latency_ms") or {}).get("p99")
    p99_text = f", p99 {p99:,.4g} ms over the run" if p99 is not None else ""
    if target is None:
        return f"{_count(predicted, 'prediction was', 'predictions were')} written{p99_text}."
    within = 1.0 - totals["missed"] / predicted
    verdict = "held" if within >= HELD_SHARE else "did not hold"
    late = [p for p in data["points"] if p.get("p99_ms", 0) > target]
    timed = [p for p in data["points"] if "p99_ms" in p]
    seconds = f" (p99 above it in {len(late)} of {len(timed)} seconds)" if late else ""
    return (
        f"The latency target of {target:g} ms {verdict}: {within:.2%} of "
        f"{_count(predicted, 'prediction', 'predictions')} were written within it"
        f"{p99_text}{seconds}."
    )


def model_sentence(data: Mapping[str, Any]) -> str:
    """How the task's score moved, and what the drift detector and replacements did."""
    last, totals = data.get("last_scores") or {}, data["totals"]
    metrics = headline_metrics(data.get("task", ""), last)
    if not metrics:
        text = "No prequential score was reported"
        text += f" ({_count(totals['learned'], 'event', 'events')} learned)."
    else:
        parts = []
        for metric in metrics:
            # As charted: the last value reported in each second.
            charted = [p["scores"][metric] for p in data["points"] if metric in p.get("scores", {})]
            moved = f" (from {charted[0]:.3f}, lowest {min(charted):.3f})" if charted else ""
            parts.append(f"{metric_title(metric)} ended at {last[metric]:.3f}{moved}")
        text = "The model's " + " and ".join(parts)
        text += f", having learned from {_count(totals['learned'], 'event', 'events')}."
    drifts, replaced = totals["drifts"], totals["replacements"]
    marks = data.get("marks", [])
    if drifts:
        first_drift = next((m["t"] for m in marks if m["kind"] == "drift"), None)
        at = f" (first at {first_drift:.1f} s)" if first_drift is not None else ""
        text += f" The drift detector fired {_count(drifts, 'time', 'times')}{at}"
        text += (
            f" and the model was replaced {_count(replaced, 'time', 'times')}."
            if replaced
            else "; the model was not replaced."
        )
    elif replaced:
        text += f" The model was replaced {_count(replaced, 'time', 'times')}."
    else:
        text += " No drift was detected."
    return text


def summary(name: str, data: Mapping[str, Any], duration_s: float) -> str:
    """The paragraph at the top of the report for one pipeline.

    >>> data = {"task": "classification", "latency_target_ms": 100.0,
    ...         "latency_ms": {"p99": 40.0},
    ...         "last_scores": {"auc": 0.9}, "marks": [],
    ...         "points": [{"t": 0, "consumed": 900, "scores": {"auc": 0.8}},
    ...                    {"t": 1, "consumed": 100, "scores": {"auc": 0.9}}],
    ...         "totals": {"consumed": 1000, "predicted": 1000, "learned": 1000, "missed": 0,
    ...                    "drifts": 0, "replacements": 0, "checkpoints": 0,
    ...                    "invalid": {}, "unmatched": {}}}
    >>> print(summary("fraud", data, 2.0))  # doctest: +NORMALIZE_WHITESPACE
    fraud (classification) consumed 1,000 messages in 2 s (peak 900 a second) and wrote 1,000
    predictions. The latency target of 100 ms held: 100.00% of 1,000 predictions were written
    within it, p99 40 ms over the run. The model's AUC ended at 0.900 (from 0.800, lowest 0.800),
    having learned from 1,000 events. No drift was detected.
    """
    totals = data["totals"]
    peak = max((p.get("consumed", 0) for p in data["points"]), default=0)
    task = data.get("task", "unknown task")
    text = (
        f"{name}{'' if task == name else f' ({task})'} consumed "
        f"{_count(totals['consumed'], 'message', 'messages')} in {duration_s:,.0f} s "
        f"(peak {peak:,} a second) and wrote "
        f"{_count(totals['predicted'], 'prediction', 'predictions')}. "
    )
    text += latency_sentence(data) + " " + model_sentence(data)
    if totals["invalid"]:
        dead = sum(totals["invalid"].values())
        text += (
            f" {_count(dead, 'message was', 'messages were')} dead-lettered "
            f"({_reasons(totals['invalid'])})."
        )
    if totals["unmatched"]:
        text += f" Labels that matched no event: {_reasons(totals['unmatched'])}."
    if totals["checkpoints"]:
        text += f" {_count(totals['checkpoints'], 'checkpoint was', 'checkpoints were')} written."
    return text
