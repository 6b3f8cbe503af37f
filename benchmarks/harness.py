"""``python -m benchmarks.harness [--quick]``: every batching variant, every scenario, one run.

Starts one embedded broker and one Redis, a load-generator process, then runs each scenario for
every variant in turn, and writes ``benchmarks/results/latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks import plan as plans
from benchmarks.load import LoadGenerator
from benchmarks.report import machine_info, write
from benchmarks.scenarios import Scenario, Services, run_variant
from benchmarks.targets import drift_check, latency_check, throughput_check
from benchmarks.variants import FIXED, LATENCY_TARGET_MS, VARIANTS
from connectors.embedded import EmbeddedBroker, EmbeddedRedis

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 3 minutes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # kafka-python warns about slow event-loop tasks whenever the machine is busy: noise here.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    results = run(plans.QUICK if args.quick else plans.FULL, quick=args.quick)
    json_path, md_path = write(results, args.out)
    print(f"results written to {json_path} and {md_path}")
    print(md_path.read_text())


def run(plan: plans.Plan, quick: bool) -> dict[str, Any]:
    """Run every scenario for every variant against one broker and one Redis."""
    machine = machine_info()
    started = time.monotonic()
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as redis_server,
        LoadGenerator(broker.bootstrap) as load,
    ):
        services = Services(broker.bootstrap, redis_server.url, load)
        top = plans.max_throughput(plan)
        runs[top.name] = _all_variants(top, services)
        size1 = runs[top.name][FIXED[0].name]["throughput"]
        steady = [plans.steady(plan, rate) for rate in plans.steady_rates(plan, size1)]
        for scenario in [*steady, plans.spike(plan), plans.drift(plan)]:
            runs[scenario.name] = _all_variants(scenario, services)
    names = [s.name for s in steady]
    return {
        "quick": quick,
        "machine": machine,
        "wall_seconds": round(time.monotonic() - started, 1),
        "latency_target_ms": LATENCY_TARGET_MS,
        "plan": _plan_dict(plan),
        "targets": {
            "latency": latency_check(runs, [*names, "spike"]),
            "throughput": throughput_check(runs, names, top.name),
            "drift": drift_check(runs, "drift", top.name),
        },
        "runs": runs,
    }


def _plan_dict(plan: plans.Plan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in plan.__slots__}


def _all_variants(scenario: Scenario, services: Services) -> dict[str, dict[str, Any]]:
    out = {}
    for variant in VARIANTS:
        began = time.monotonic()
        figures = run_variant(variant, scenario, services)
        out[variant.name] = figures
        print(_line(figures, time.monotonic() - began), flush=True)
    return out


def _line(f: dict[str, Any], seconds: float) -> str:
    latency = (
        f" p50 {f['p50_ms']:.0f} ms p99 {f['p99_ms']:.0f} ms within {f['within_target']:.1%}"
        if "p99_ms" in f
        else ""
    )
    drift = (
        f" pre-drift AUC {f['pre_drift_auc']:.3f} recovered after {f['recovered_after']}"
        f" loss {f['drift_loss']:.0f}"
        if "drift_loss" in f
        else ""
    )
    return (
        f"{f['scenario']:>16} {f['variant']:>10}: {f['processed']:>7,}/{f['produced']:<7,} "
        f"{f['throughput']:>8,.0f} ev/s (offered {f['offered_rate']:,.0f}) mean batch "
        f"{f['mean_batch']:.0f}{latency}{drift} [{seconds:.0f} s]"
    )


if __name__ == "__main__":
    main()
