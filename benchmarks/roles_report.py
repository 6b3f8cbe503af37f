"""The roles benchmark's targets, capacity model and markdown (``results/roles.{json,md}``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import write_results
from streamlearn.config import RolesConfig

SCALE = (1, 2, 4, 8, 16)


def capacity(costs_us: dict[str, float], scorers: Sequence[int] = SCALE) -> list[dict[str, Any]]:
    """Predicted events/s for N scorers, each process on a core of its own.

    ``costs_us`` is the CPU per event of a scorer (the work splits across scorers), the learner,
    Redis and the broker; each ceiling is 10^6 / cost, and throughput is the smallest of
    N x the scorer's and the others'. ``bound`` names what saturates first.

    >>> rows = capacity({"scorer": 40.0, "learner": 10.0, "redis": 5.0, "broker": 25.0}, (1, 2))
    >>> [(r["scorers"], r["events_per_s"], r["bound"]) for r in rows]
    [(1, 25000, 'scorers'), (2, 40000, 'broker')]
    """
    ceilings = {k: 1e6 / v for k, v in costs_us.items() if v > 0}
    rows = []
    for n in scorers:
        limits = {"scorers": n * ceilings["scorer"]}
        limits.update({k: v for k, v in ceilings.items() if k != "scorer"})
        bound = min(limits, key=lambda k: limits[k])
        rows.append(
            {
                "scorers": n,
                "machines": n + 1,
                "events_per_s": round(limits[bound]),
                "bound": bound,
                "limits": {k: round(v) for k, v in limits.items()},
            }
        )
    return rows


def model_costs(results: dict[str, Any]) -> dict[str, float]:
    """The per-event CPU the capacity model uses: scorers and learner as in variant (ii);
    Redis and the broker as the scorer and the learner each alone needed them, with the
    broker's cost of taking the events in."""
    roles = results["variants"]["ii"]["role_cpu_us_per_event"]
    ceilings = results["ceilings"]
    scorer, learner = (ceilings[k]["services_us_per_event"] for k in ("scorer", "learner"))
    return {
        "scorer": roles["scorer"],
        "learner": roles["learner"],
        "redis": round(scorer["redis"] + learner["redis"], 2),
        "broker": round(
            scorer["broker"] + learner["broker"] + results["backlog"]["broker_ingest_us_per_event"],
            2,
        ),
    }


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Each target of issue 10 with its measured ratio and whether it was met."""
    v1, v2 = results["variants"]["i"], results["variants"]["ii"]
    cpu_ratio = v2["total_cpu_us_per_event"] / v1["total_cpu_us_per_event"]
    learner, scorer = results["ceilings"]["learner"], results["ceilings"]["scorer"]
    ceiling_ratio = learner["events_per_s"] / scorer["events_per_s"]
    cpu_ceiling_ratio = scorer["total_cpu_us_per_event"] / learner["total_cpu_us_per_event"]
    split, single = results["steady"]["split"]["served"], results["steady"]["all"]["served"]
    auc_diff = (split["auc"] or 0.0) - (single["auc"] or 0.0)
    stale = results["steady"]["split"]["staleness"]["steady"]
    interval_s = results["publish_interval_ms"] / 1000
    costs = model_costs(results)
    return {
        "cpu_ratio": {"value": round(cpu_ratio, 3), "target": 1.2, "met": cpu_ratio <= 1.2},
        "ceiling_ratio": {
            "value": round(ceiling_ratio, 2),
            "cpu_value": round(cpu_ceiling_ratio, 2),
            "target": 2.0,
            "met": ceiling_ratio >= 2.0,
        },
        "auc_diff": {"value": round(auc_diff, 4), "target": 0.01, "met": abs(auc_diff) <= 0.01},
        "staleness_p99": {
            "value_s": stale.get("p99_s"),
            "target_s": 2 * interval_s,
            "met": stale.get("p99_s") is not None and stale["p99_s"] < 2 * interval_s,
        },
        "capacity": {"costs_us_per_event": costs, "rows": capacity(costs)},
    }


def report(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``roles.json`` and ``roles.md`` into ``directory``; return their paths."""
    return write_results(results, markdown(results), directory, "roles")


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def markdown(results: dict[str, Any]) -> str:
    """The run as markdown: targets, then each part's table."""
    m, plan, t = results["machine"], results["plan"], results["targets"]
    lines = [
        f"# Scale-out roles benchmark ({'quick' if results['quick'] else 'full'} run)",
        "",
        f"{m['date']} · {m['nproc']} cores · Python {m['python']} · load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_end'])} · wall time "
        f"{results['wall_seconds']:.0f} s",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v),
        "",
        f"Stream: {plan['events']:,} fraud events (seed {plan['seed']}, pattern change at "
        f"{plan['drift_at']:,}, label inline), {plan['partitions']} partitions; processes are "
        "`python -m streamlearn run CONFIG --role ROLE` with the fraud example's configuration "
        f"(publish interval {results['publish_interval_ms']:.0f} ms, check interval "
        f"{RolesConfig().check_interval_ms} ms). "
        "One broker (Tansu) and one Redis; all on this machine.",
        "",
        *_targets(results),
        *_cpu_table(results),
        *_ceilings(results),
        *_auc_table(results),
        *_staleness(results),
        *_capacity(t["capacity"]),
    ]
    return "\n".join(lines) + "\n"


def _targets(results: dict[str, Any]) -> list[str]:
    t = results["targets"]
    v1, v2 = results["variants"]["i"], results["variants"]["ii"]
    ce = results["ceilings"]
    st = results["steady"]
    return [
        "## Targets (issue 10)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| CPU per event, 2 scorers + learner ≤ 1.2 x 1 scorer + learner | "
        f"{t['cpu_ratio']['value']:.3f} ({v2['total_cpu_us_per_event']:.1f} vs "
        f"{v1['total_cpu_us_per_event']:.1f} µs/event, all streamlearn processes) | "
        f"{_met(t['cpu_ratio']['met'])} |",
        f"| learner ceiling ≥ 2 x one scorer's | {t['ceiling_ratio']['value']:.2f}x "
        f"({ce['learner']['events_per_s']:,.0f} vs {ce['scorer']['events_per_s']:,.0f} "
        f"events/s, each alone from a backlog); by CPU per event "
        f"{t['ceiling_ratio']['cpu_value']:.2f}x | {_met(t['ceiling_ratio']['met'])} |",
        f"| served AUC, 2 scorers + learner within 0.01 of the single process | "
        f"{t['auc_diff']['value']:+.4f} ({st['split']['served']['auc']} vs "
        f"{st['all']['served']['auc']}, at {st['split']['offered_rate']:,.0f} events/s) | "
        f"{_met(t['auc_diff']['met'])} |",
        f"| staleness p99 < 2 x publish interval, at steady load | "
        f"{t['staleness_p99']['value_s']} s (< {t['staleness_p99']['target_s']:.1f} s; from "
        f"{st['split']['staleness']['warmup_s']:.0f} s after sending began; every sample: "
        f"{st['split']['staleness']['all']['p99_s']} s) | {_met(t['staleness_p99']['met'])} |",
        "",
    ]


def _cpu_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "## 1. CPU per event from a backlog (until the learner has learned every event)",
        "",
        "The scorers start first and, with no model published yet, each holds its first batch "
        "until the learner (started once every scorer holds partitions) publishes one. Work "
        "CPU (user + system, every thread): each process's CPU from its last look (every 20 ms) "
        "before it began (a scorer: wrote a prediction; a learner: consumed) to the moment its "
        "part was done (every event scored; every event learned), per event of the stream; so "
        "start-up, the wait for the model or the group, and idling after are left out (a "
        "scorer's first batch falls partly before its start: up to ~1 % of its events). "
        "Broker and Redis: their CPU from the first process's start to the last event learned. "
        "Scored ev/s: from the first prediction to the last (in (ii) the scorers take the first "
        "model up a few seconds apart, so this is not a ceiling).",
        "",
        "| variant | all streamlearn µs/event | scorers | learner | broker | Redis | "
        "scored ev/s | scored twice |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("(i) 1 scorer + learner", results["variants"]["i"])]
    rows.append(("(ii) 2 scorers + learner", results["variants"]["ii"]))
    rows.append(
        ("single process (`--role all`, with predictions topic)", results["single_backlog"])
    )
    for name, f in rows:
        r, s = f["role_cpu_us_per_event"], f["services_us_per_event"]
        lines.append(
            f"| {name} | {f['total_cpu_us_per_event']:.1f} | {r.get('scorer', r.get('all', 0)):.1f}"
            f" | {r.get('learner', 0.0):.1f} | {s['broker']:.1f} | {s['redis']:.1f} | "
            f"{f['rates'].get('scored', 0):,.0f} | {f['scored_twice']:,} |"
        )
    lines += [
        "",
        "Per process (CPU s at start-up, for work; µs/event by stage from its /metrics):",
        "",
    ]
    for name, f in rows:
        for proc, p in f["processes"].items():
            n = max(p["predictions"] if p["role"] != "learner" else p["learned"], 1)
            stages = ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in p["stage_s"].items() if v)
            lines.append(
                f"- {name} · {proc}: start-up {p['startup_cpu_s']:.2f} s, work "
                f"{p['work_cpu_s']:.2f} s; consumed {p['consumed']:,}, predicted "
                f"{p['predictions']:,}, learned {p['learned']:,}, {p['batches']} batches; "
                f"stages {stages}"
            )
    ingest = results["backlog"]["broker_ingest_us_per_event"]
    lines += ["", f"Broker CPU to take the backlog in (producer in its own process): "
              f"{ingest:.1f} µs/event.", ""]  # fmt: skip
    return lines


def _ceilings(results: dict[str, Any]) -> list[str]:
    ce = results["ceilings"]
    v1 = results["variants"]["i"]
    return [
        "## 2. Ceilings, each alone from a backlog",
        "",
        "| process | events/s | CPU µs/event | 1 core's worth (10^6 / µs) |",
        "|---|---:|---:|---:|",
        f"| learner (fresh, reading (i)'s learn topic from the beginning) | "
        f"{ce['learner']['events_per_s']:,.0f} | {ce['learner']['total_cpu_us_per_event']:.1f} "
        f"| {1e6 / ce['learner']['total_cpu_us_per_event']:,.0f} |",
        f"| scorer ((i)'s model published, no learner) | {ce['scorer']['events_per_s']:,.0f} | "
        f"{ce['scorer']['total_cpu_us_per_event']:.1f} | "
        f"{1e6 / ce['scorer']['total_cpu_us_per_event']:,.0f} |",
        f"| scorer in (i), the learner beside it | {v1['rates']['scored']:,.0f} | "
        f"{v1['role_cpu_us_per_event']['scorer']:.1f} | "
        f"{1e6 / v1['role_cpu_us_per_event']['scorer']:,.0f} |",
        "",
    ]


def _auc_table(results: dict[str, Any]) -> list[str]:
    st = results["steady"]
    lines = [
        "## 3. Prequential AUC of the served scores",
        "",
        "Exact ROC AUC (scikit-learn) of every served score (the last one per event) against "
        "the stream's labels; halves split at the pattern change.",
        "",
        "| system | how | served | AUC | first half | second half | after the first 5 % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("2 scorers + learner", f"steady {st['split']['offered_rate']:,.0f} ev/s, predictions "
         "topic", st["split"]["served"]),
        ("2 scorers + learner", "same run, scores in the learn topic",
         st["split"]["served_from_learn_topic"]),
        ("single process", f"steady {st['all']['offered_rate']:,.0f} ev/s, predictions topic",
         st["all"]["served"]),
        ("single process", "backlog, predictions topic", results["single_backlog"]["served"]),
        ("1 scorer + learner", "backlog, scores in the learn topic",
         results["variants"]["i"]["served_from_learn_topic"]),
        ("2 scorers + learner", "backlog, scores in the learn topic",
         results["variants"]["ii"]["served_from_learn_topic"]),
    ]  # fmt: skip
    for name, how, s in rows:
        lines.append(
            f"| {name} | {how} | {s['served']:,}/{s['events']:,} | {s['auc']} | "
            f"{s['auc_first_half']} | {s['auc_second_half']} | {s['auc_after_first_5pct']} |"
        )
    return [*lines, ""]


def _staleness(results: dict[str, Any]) -> list[str]:
    split, single = results["steady"]["split"], results["steady"]["all"]
    st = split["staleness"]
    s, a = st["steady"], st["all"]
    idle = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in f["idle_cores"].items())
        for name, f in (("2 scorers + learner", split), ("single process", single))
    )
    return [
        "## 4. Steady load",
        "",
        f"The stream sent at {split['offered_rate']:,.0f} events/s (2 scorers + learner) and "
        f"{single['offered_rate']:,.0f} events/s (single process) to fresh topics, with the "
        "predictions topic on. Staleness: each scorer's `streamlearn_model_staleness_seconds` "
        f"every 100 ms while sending; *steady* leaves out the first {st['warmup_s']:.0f} s, whose "
        "samples still show how long the learner sat idle before sending began (it vouches "
        "for its model only when it learns).",
        "",
        "| | 2 scorers + learner | single process |",
        "|---|---:|---:|",
        f"| staleness p50 / p99 / max, s (steady, {s['samples']} samples) | {s['p50_s']} / "
        f"{s['p99_s']} / {s['max_s']} | - |",
        f"| staleness p50 / p99 / max, s (every sample, {a['samples']}) | {a['p50_s']} / "
        f"{a['p99_s']} / {a['max_s']} | - |",
        f"| predictions within 100 ms | {_pct(split['within_100ms'])} | "
        f"{_pct(single['within_100ms'])} |",
        f"| caught up after the last send, s | {split['drained_after_send_s']} | "
        f"{single['drained_after_send_s']} |",
        f"| CPU µs/event, all streamlearn processes | {split['total_cpu_us_per_event']:.1f} | "
        f"{single['total_cpu_us_per_event']:.1f} |",
        f"| broker / Redis µs/event | {split['services_us_per_event']['broker']:.1f} / "
        f"{split['services_us_per_event']['redis']:.1f} | "
        f"{single['services_us_per_event']['broker']:.1f} / "
        f"{single['services_us_per_event']['redis']:.1f} |",
        "",
        f"Idle, ready and before sending (cores, over 3 s): {idle}.",
        "",
        "At this rate batches are small (the latency target closes them), so per-batch and "
        "idle costs (polls, commits, the predictions topic's per-record sends) dominate the CPU "
        "per event; the capacity model below uses the backlog costs, as a saturated system "
        "runs full batches.",
        "",
    ]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _capacity(cap: dict[str, Any]) -> list[str]:
    c = cap["costs_us_per_event"]
    lines = [
        "## 5. Capacity model",
        "",
        "Assumption: every process on a core of its own (N scorers on N machines, the learner on "
        "one more, Redis and the broker each on one core), at saturation (full batches, so the "
        "backlog costs apply), the CPU per event measured here: scorer "
        f"{c['scorer']:.1f} µs and learner {c['learner']:.1f} µs as in (ii) (the scorers' work "
        f"splits N ways), Redis {c['redis']:.1f} µs and broker {c['broker']:.1f} µs (what the "
        "scorer and the learner each alone cost them, plus the broker taking the events in). "
        "Throughput = min(N x scorer ceiling, learner, Redis, broker ceilings), each ceiling "
        "10^6 / µs; no network, no producers, no predictions topic counted.",
        "",
        "| scorers N | machines | events/s | saturates first | N x scorer | learner | Redis | "
        "broker |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in cap["rows"]:
        lim = r["limits"]
        lines.append(
            f"| {r['scorers']} | {r['machines']} | {r['events_per_s']:,} | {r['bound']} | "
            f"{lim['scorers']:,} | {lim.get('learner', 0):,} | {lim.get('redis', 0):,} | "
            f"{lim.get('broker', 0):,} |"
        )
    return [*lines, ""]
