"""``python -m benchmarks.retention_sizes``: batch size against size 1 on several streams.

The retention benchmark compares each batch size with batch size 1 on one stream (seed 7), with
a bootstrap interval over that stream's customers. That interval does not cover how the model's
path would change on another stream. Here the same comparison (the benchmark's sub-stream: the
first 150,000 events and their labels, warm-up before event 90,000) is repeated on streams of
other seeds, at more batch sizes and with the adaptive batcher's boundaries
(:mod:`benchmarks.retention_adaptive`), to tell a real effect of the batch size (one that
shows on every stream, and grows or shrinks with the size) from the spread between streams.

Results in ``results/retention_sizes.{json,md}``. About 10 minutes on 2 quiet cores with the
defaults; in-process replays only (no broker, no Redis), two worker processes.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import machine_info, write_results
from benchmarks.retention import FULL
from benchmarks.retention_adaptive import ARRIVALS, replay_adaptive
from benchmarks.retention_replay import replay, sub_stream
from benchmarks.retention_stats import paired_delta
from benchmarks.retention_stream import Message, StreamSpec, build_stream

RESULTS = Path(__file__).parent / "results"
SEEDS = (7, 8, 9)
SIZES = (1, 4, 16, 32, 64, 256, 2048)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the comparison, write the results."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.retention_sizes", description=__doc__
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes) | {1})
    results = run(args.seeds, sizes)
    json_path, md_path = write_results(results, markdown(results), args.out, "retention_sizes")
    print(f"results written to {json_path} and {md_path}")
    print(md_path.read_text(encoding="utf-8"))


def _variants(sizes: list[int]) -> list[str]:
    return [str(b) for b in sizes] + [f"adaptive {a.name}" for a in ARRIVALS]


def run(seeds: list[int], sizes: list[int]) -> dict[str, Any]:
    """Every (seed, variant) replay; the paired differences from batch size 1 per seed."""
    machine, started = machine_info(), time.monotonic()
    plan = FULL
    jobs = [(seed, v) for v in _variants(sizes) for seed in seeds]  # size 1 first: slowest
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        futures: dict[tuple[int, str], Future[tuple[dict[str, Any], dict[str, Any]]]] = {
            job: pool.submit(_job, replace(plan.stream, seed=job[0]), plan.sub_events, job[1])
            for job in jobs
        }
        done = {job: future.result() for job, future in futures.items()}
    per_seed: dict[str, Any] = {}
    for seed in seeds:
        base = done[(seed, "1")][1]
        rows = {}
        for v in _variants(sizes):
            figures, arrays = done[(seed, v)]
            rows[v] = {
                "auc_after_warmup": figures["auc_after_warmup"],
                "auc": figures["auc"],
                "vs_1_after_warmup": paired_delta(arrays, base, plan.warmup),
                "vs_1_all": paired_delta(arrays, base),
                "batches": figures.get("batches"),
            }
        per_seed[str(seed)] = rows
        print(f"seed {seed} done [{time.monotonic() - started:.0f} s]", flush=True)
    return {
        "machine": machine,
        "stream": {**plan.stream.as_dict(), "seeds": seeds},
        "sub_stream_events": plan.sub_events,
        "warmup_events": plan.warmup,
        "per_seed": per_seed,
        "summary": _summary(per_seed, _variants(sizes)),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def _summary(per_seed: dict[str, Any], variants: list[str]) -> dict[str, Any]:
    out = {}
    for v in variants[1:]:
        deltas = [rows[v]["vs_1_after_warmup"]["delta"] for rows in per_seed.values()]
        out[v] = {
            "mean_after_warmup": round(float(np.mean(deltas)), 4),
            "min_after_warmup": min(deltas),
            "max_after_warmup": max(deltas),
            "worst_abs_after_warmup": max(abs(d) for d in deltas),
        }
    return out


@lru_cache(maxsize=1)
def _stream(spec: StreamSpec, events: int) -> list[Message]:
    return sub_stream(build_stream(spec), events)


def _job(spec: StreamSpec, events: int, variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    stream = _stream(spec, events)
    warmup = FULL.warmup
    if variant.startswith("adaptive "):
        arrival = next(a for a in ARRIVALS if a.name == variant.split(" ", 1)[1])
        result, chosen = replay_adaptive(stream, arrival)
        return {**result.summary(events, warmup), "batches": chosen}, result.arrays()
    result = replay(stream, batch_size=int(variant))
    return result.summary(events, warmup), result.arrays()


def _d(d: dict[str, Any]) -> str:
    return f"{d['delta']:+.3f} [{d['ci90'][0]:+.3f}, {d['ci90'][1]:+.3f}]"


def markdown(results: dict[str, Any]) -> str:
    """The comparison as markdown tables."""
    m, per_seed = results["machine"], results["per_seed"]
    seeds = list(per_seed)
    variants = list(next(iter(per_seed.values())))
    lines = [
        "# Retention: batch size against batch size 1, on several streams",
        "",
        f"{m['date']} · {m['nproc']} cores · Python {m['python']} · load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} · wall time "
        f"{results['wall_seconds']:.0f} s",
        "",
        f"Streams of seeds {', '.join(seeds)} (otherwise the retention benchmark's: "
        f"{results['stream']['customers']:,} customers, {results['stream']['events']:,} events); "
        f"on each, its first {results['sub_stream_events']:,} events and their labels, "
        "replayed in-process at each batch size. Paired AUC difference from batch size 1 on the "
        f"same stream, after warm-up (events from {results['warmup_events']:,} on): point "
        "[90 % interval, bootstrap over that stream's customers]. Adaptive: the boundaries the "
        "real runner and adaptive batcher choose on a simulated clock "
        "(`benchmarks/retention_adaptive.py`).",
        "",
        f"| batch size | {' | '.join(f'seed {s}' for s in seeds)} | mean over seeds |",
        "|---" * (len(seeds) + 2) + "|",
    ]
    for v in variants:
        if v == "1":
            cells = [f"AUC {per_seed[s]['1']['auc_after_warmup']:.4f}" for s in seeds]
            lines.append(f"| 1 (AUC after warm-up) | {' | '.join(cells)} | - |")
            continue
        cells = [_d(per_seed[s][v]["vs_1_after_warmup"]) for s in seeds]
        mean = results["summary"][v]["mean_after_warmup"]
        lines.append(f"| {v} | {' | '.join(cells)} | {mean:+.3f} |")
    lines += [
        "",
        "Over all labels (warm-up included):",
        "",
        f"| batch size | {' | '.join(f'seed {s}' for s in seeds)} |",
        "|---" * (len(seeds) + 1) + "|",
    ]
    for v in variants[1:]:
        lines.append(f"| {v} | {' | '.join(_d(per_seed[s][v]['vs_1_all']) for s in seeds)} |")
    lines += ["", "Adaptive boundaries (seed by seed):", ""]
    for v in variants:
        for s in seeds:
            b = per_seed[s][v]["batches"]
            if b:
                lines.append(
                    f"- {v}, seed {s}: {b['batches']:,} batches, mean {b['mean']:.0f}, "
                    f"median {b['p50']}, min {b['min']}, {b['at_2048_pct']:.0f} % at 2048; "
                    f"closed by {b['triggers']}"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
