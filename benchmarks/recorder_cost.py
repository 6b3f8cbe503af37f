"""``python -m benchmarks.recorder_cost``: what ``streamlearn run --record`` adds per batch.

The run recorder is a set of hooks the pipeline thread calls at every batch (consumed,
latencies, batch closed, size, learned, model version, lag). This times exactly that sequence
on the real :class:`~streamlearn.run_record.RunRecorder`, at batch sizes 1, 64 and 1 024, and
sets it against the engine's own cost per event in the recorded hot-path run
(``results/hotpath.json``, variant (d)). Results go to ``results/recorder_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.report import machine_info, write_results
from streamlearn.run_record import RunRecorder

RESULTS = Path(__file__).parent / "results"
SIZES = (1, 64, 1024)


def hooks_per_batch(size: int, batches: int, seed: int = 0) -> float:
    """Seconds the recorder's hooks take for one batch of ``size`` events (mean of ``batches``).

    >>> 0 < hooks_per_batch(8, batches=50) < 0.01
    True
    """
    recorder = RunRecorder({"fraud": ("classification", 100.0)})
    latencies = np.random.default_rng(seed).gamma(4, 0.008, size=size)
    started = time.perf_counter()
    for version in range(batches):
        recorder.on_batch_started("fraud")
        recorder.on_consumed("fraud", size)
        recorder.on_predictions("fraud", latencies)
        recorder.on_batch_closed("fraud", size, "size")
        recorder.on_batch_size("fraud", size)
        recorder.on_learned("fraud", size)
        recorder.on_model_version("fraud", version)
        recorder.on_lag("fraud", {0: 3, 1: 0})
    return (time.perf_counter() - started) / batches


def engine_us_per_event(hotpath: Path, variant: str) -> float | None:
    """A variant's wall time per event in the recorded hot-path run, in µs, if it is there."""
    if not hotpath.is_file():
        return None
    variants = orjson.loads(hotpath.read_bytes()).get("variants", {})
    rate = variants.get(variant, {}).get("events_per_s")
    return 1e6 / rate if rate else None


def main(argv: list[str] | None = None) -> None:
    """Measure, then write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recorder_cost", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    # The engine at batch size 1 is compared with (d) run at that size, the others with (d).
    engine = {
        size: engine_us_per_event(RESULTS / "hotpath.json", "d_size1" if size == 1 else "d")
        for size in SIZES
    }
    rows: list[dict[str, Any]] = []
    for size in SIZES:
        batches = 200_000 // size + 2_000
        hooks_per_batch(size, batches=500)  # warm up
        per_batch = min(hooks_per_batch(size, batches) for _ in range(3))
        rows.append(
            {
                "batch_size": size,
                "us_per_batch": per_batch * 1e6,
                "us_per_event": per_batch * 1e6 / size,
            }
        )
    lines = [
        "# What `streamlearn run --record` costs",
        "",
        f"{machine_info()['date']} · `python -m benchmarks.recorder_cost` · the recorder's hooks, "
        "called as the pipeline calls them at every batch; best of 3.",
        "",
        "| batch size | µs per batch | µs per event | share of the engine's time per event |",
        "|---:|---:|---:|---:|",
    ]
    for row in rows:
        spent = engine[row["batch_size"]]
        share = f"{row['us_per_event'] / spent:.2%}" if spent else "n/a"
        lines.append(
            f"| {row['batch_size']:,} | {row['us_per_batch']:.1f} | {row['us_per_event']:.3f} "
            f"| {share} |"
        )
    if engine[1] and engine[SIZES[-1]]:
        lines += [
            "",
            "The engine's time per event is from `results/hotpath.md`: (d), the default fraud "
            f"configuration from a backlog, {engine[SIZES[-1]]:.1f} µs; (d) at batch size 1, "
            f"{engine[1]:.1f} µs.",
        ]
    results = {
        "machine": machine_info(),
        "rows": rows,
        "engine_us_per_event": {str(size): us for size, us in engine.items()},
    }
    for path in write_results(results, "\n".join(lines) + "\n", args.out, "recorder_cost"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
