"""``python -m benchmarks.retention_memory``: Redis memory of delayed labels from a backlog.

The retention benchmark's end-to-end run (``benchmarks.retention_e2e``: 300 000 activity events
over 120 days and their churn labels 30 days later, horizon 31 days, one broker and one Redis)
twice, with different checkpoint settings: the defaults (every 10 s, 5 kept) and every 2 s with
3 kept. From a backlog no pending entry's TTL (wall time) passes; entries are forgotten by event
time once every kept checkpoint has read both topics past them, so how far behind the store
forgets is what ``keep x interval_s`` of processing spans. Each run's Redis memory, pending
keys and throughput go to ``results/retention_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.report import machine_info, write_results
from benchmarks.retention import FULL, QUICK
from benchmarks.retention_e2e import run_end_to_end
from benchmarks.retention_stream import HORIZON_S
from connectors.embedded import EmbeddedBroker, EmbeddedRedis

RESULTS = Path(__file__).parent / "results"
SETTINGS = {
    "defaults (10 s, keep 5)": None,
    "every 2 s, keep 3": {"interval_s": 2.0, "keep": 3},
}


def main(argv: list[str] | None = None) -> None:
    """Run both settings on one broker and Redis, then write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retention_memory")
    parser.add_argument("--quick", action="store_true", help="a 60 000-event smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    spec = (QUICK if args.quick else FULL).stream
    runs: dict[str, dict[str, Any]] = {}
    with EmbeddedBroker() as broker:
        for i, (name, checkpoint) in enumerate(SETTINGS.items()):
            with EmbeddedRedis() as redis_server:  # each run's memory is its own
                topic = f"retention-memory-{i}"
                runs[name] = run_end_to_end(
                    spec, broker.bootstrap, redis_server.url, topic, checkpoint=checkpoint
                )
            print(f"{name}: {_line(runs[name])}")
    results = {
        "machine": machine_info(),
        "stream": {"events": spec.events, "days": spec.days, "horizon_s": HORIZON_S},
        "runs": {name: _kept(run) for name, run in runs.items()},
    }
    text = _markdown(results, spec.events)
    for path in write_results(results, text, args.out, "retention_memory"):
        print(f"wrote {path}")


def _kept(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("events_per_s", "messages_per_s", "processing_s", "stage_us_per_message", "rss_mb")
    return {
        **{k: run[k] for k in keys},
        "learned": run["learned"],
        "labels_unmatched": run["labels_unmatched"],
        "redis": run["redis"],
        "memory_samples": run["memory_samples"],
    }


def _line(run: dict[str, Any]) -> str:
    redis = run["redis"]
    return (
        f"{run['events_per_s']:,} events/s, Redis {redis['used_memory_mb']:.0f} MiB "
        f"(peak {redis['used_memory_peak_mb']:.0f}), {redis['keys']['pending']:,} pending keys"
    )


def _markdown(results: dict[str, Any], events: int) -> str:
    runs = results["runs"]
    lines = [
        "# Redis memory of delayed labels from a backlog",
        "",
        f"{results['machine']['date']} · `python -m benchmarks.retention_memory` · "
        f"{events:,} retention events over {results['stream']['days']:.0f} days of event time "
        f"and their churn labels (30 days later, horizon {HORIZON_S // 86_400} days), produced "
        "first, then consumed by the real processor (one broker, one Redis, a fresh topic per "
        "run, a fresh Redis). Pending events are forgotten once every kept checkpoint has read "
        "both topics past their event time plus the horizon; before that (with the TTL alone) "
        "a backlog kept every event's entry to the end (`retention.md`).",
        "",
        "| checkpoints | events/s | Redis at the end (peak) | pending keys at the end "
        "| labels learned | µs per message: checkpoint + commit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        redis, stages = run["redis"], run["stage_us_per_message"]
        saving = stages.get("checkpoint", 0.0) + stages.get("commit", 0.0)
        lines.append(
            f"| {name} | {run['events_per_s']:,} | {redis['used_memory_mb']:.0f} MiB "
            f"({redis['used_memory_peak_mb']:.0f}) | {redis['keys']['pending']:,} "
            f"| {run['learned']:,} | {saving:.1f} |"
        )
    lines += [
        "",
        "Redis memory (MiB) as the backlog is consumed, at each tenth of the messages:",
        "",
        "| checkpoints | " + " | ".join(f"{t}/10" for t in range(1, 11)) + " |",
        "|---|" + "---:|" * 10,
    ]
    for name, run in runs.items():
        samples = run["memory_samples"]
        total = max(x["consumed"] for x in samples)
        cells = []
        for tenth in range(1, 11):
            near = min(samples, key=lambda x: abs(x["consumed"] - total * tenth / 10))
            cells.append(f"{near['redis_mb']:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
