"""``python -m benchmarks.retention [--quick] [--profile]``: the retention (churn) benchmark.

Issue 7's numbers, on one generated customer-activity stream (and its twin with a price rise at
the midpoint), with churn labels 30 days after the events they label:

1. prequential ROC AUC of the served churn risks joined with their delayed labels, with the
   per-customer aggregates and without them, and per tenth of the stream (recovery after drift);
2. how much mini-batching costs: batch size 1 against fixed 32, 256 and 2048 and against the
   boundaries the adaptive batcher chooses (from a backlog, and at a steady 2,000 events/s, on
   a simulated clock: ``benchmarks/retention_adaptive.py``), on the same stream;
3. throughput end to end on the real broker and Redis from a backlog, with the processor's RSS
   and Redis memory.

Parts 1 and 2 replay the stream in-process through the real task (two worker processes; their
timing is not a result). Part 3 runs alone afterwards. ``--profile`` adds a second end-to-end
run sampled by py-spy and reports where the pipeline thread's time goes. ``--reuse-end-to-end``
skips part 3 and keeps the end-to-end figures of the results file being replaced (for a rerun of
the accuracy parts on a machine too busy to measure throughput); the results say so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.report import machine_info, write_results
from benchmarks.retention_adaptive import ARRIVALS, replay_adaptive
from benchmarks.retention_e2e import run_end_to_end
from benchmarks.retention_profile import summarise
from benchmarks.retention_replay import replay, sub_stream
from benchmarks.retention_report import markdown, targets
from benchmarks.retention_stats import RESAMPLES, paired_delta
from benchmarks.retention_stream import StreamSpec, build_stream, pipeline_dict
from connectors.embedded import EmbeddedBroker, EmbeddedRedis

RESULTS = Path(__file__).parent / "results"
BATCH_SIZES = (1, 32, 256, 2048)
MAIN_BATCH = 256  # the batch size of the with/without-aggregates and drift comparisons
PROFILE_RATE_HZ = 200


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of one benchmark run."""

    stream: StreamSpec
    sub_events: int  # the sub-stream on which batch size 1 is compared
    warmup_share: float = 0.3  # events scored before this share of the stream are warm-up

    @property
    def drift(self) -> StreamSpec:
        """The same stream with the price rise at its midpoint."""
        return replace(self.stream, drift_at=self.stream.events // 2)

    @property
    def warmup(self) -> int:
        """Position of the first event counted after warm-up."""
        return int(self.stream.events * self.warmup_share)


FULL = Plan(StreamSpec(seed=7, customers=5_000, events=300_000), sub_events=150_000)
QUICK = Plan(StreamSpec(seed=7, customers=1_000, events=60_000), sub_events=30_000)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the benchmark, write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retention", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 2 minutes")
    parser.add_argument("--profile", action="store_true", help="add a py-spy profiled run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    parser.add_argument(
        "--reuse-end-to-end",
        action="store_true",
        help="keep the end-to-end figures (and profile) of the results file in --out",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(message)s")
    reused = _previous(args.out) if args.reuse_end_to_end else None
    plan = QUICK if args.quick else FULL
    results = run(plan, quick=args.quick, profile=args.profile, reused=reused)
    json_path, md_path = write(results, args.out)
    print(f"results written to {json_path} and {md_path}")
    print(md_path.read_text(encoding="utf-8"))


def _previous(directory: Path) -> dict[str, Any]:
    """The end-to-end part of the results file in ``directory``, and when it was measured."""
    old = json.loads((directory / "retention.json").read_text(encoding="utf-8"))
    return {
        "end_to_end": old["end_to_end"],
        "profile": old.get("profile"),
        "measured": old.get("end_to_end_measured") or old["machine"]["date"],
    }


def run(
    plan: Plan, quick: bool, profile: bool, reused: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every part of the benchmark; the results as one dictionary.

    With ``reused`` (see :func:`_previous`) part 3 is not run: its figures are those given.
    """
    machine = machine_info()
    started = time.monotonic()
    replays = _replays(plan)
    print(f"in-process replays done [{time.monotonic() - started:.0f} s]", flush=True)
    if reused is None:
        e2e, spied = _end_to_end(plan, profile)
        measured = machine["date"]
    else:
        e2e, spied, measured = reused["end_to_end"], reused["profile"], reused["measured"]
    results: dict[str, Any] = {
        "quick": quick,
        "machine": machine,
        "stream": {
            **plan.stream.as_dict(),
            "drift_at": None,
            "drift_variant_drift_at": plan.drift.drift_at,
            "warmup_events": plan.warmup,
            "sub_stream_events": plan.sub_events,
        },
        "pipeline": pipeline_dict(),
        "main_batch_size": MAIN_BATCH,
        **replays,
        "end_to_end": e2e,
        "end_to_end_measured": measured,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    if spied is not None:
        results["profile"] = spied
    results["targets"] = targets(results)
    return results


# --- parts 1 and 2: in-process replays -------------------------------------------------------


def _replays(plan: Plan) -> dict[str, Any]:
    nodrift, drift = plan.stream, plan.drift
    # (name, stream, sub-stream events or None, batch size or arrival, aggregates); the
    # slowest first.
    sub = plan.sub_events
    jobs: list[tuple[str, StreamSpec, int | None, int | str, bool]] = [
        ("sub-1", nodrift, sub, 1, True),
        ("main-agg", nodrift, None, MAIN_BATCH, True),
        ("main-own", nodrift, None, MAIN_BATCH, False),
        ("drift-agg", drift, None, MAIN_BATCH, True),
        ("drift-own", drift, None, MAIN_BATCH, False),
        ("full-2048", nodrift, None, 2048, True),
        *((f"sub-{b}", nodrift, sub, b, True) for b in BATCH_SIZES[1:]),
        *((f"sub-{a.name}", nodrift, sub, a.name, True) for a in ARRIVALS),
    ]
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        futures: dict[str, Future[tuple[dict[str, Any], dict[str, Any]]]] = {
            name: pool.submit(_replay_job, spec, part, size, aggs, plan.warmup)
            for name, spec, part, size, aggs in jobs
        }
        done = {name: future.result() for name, future in futures.items()}
    for name, (figures, _) in done.items():
        print(
            f"{name:>10}: AUC {figures['auc']} after warm-up {figures['auc_after_warmup']} "
            f"({figures['labels_joined']:,} labels, {figures['seconds']:.0f} s)",
            flush=True,
        )
    runs = {name: figures for name, (figures, _) in done.items()}
    arrays = {name: joined for name, (_, joined) in done.items()}
    return {
        "accuracy": {
            "no_drift": {
                "with_aggregates": runs["main-agg"],
                "without_aggregates": runs["main-own"],
            },
            "drift": {
                "with_aggregates": runs["drift-agg"],
                "without_aggregates": runs["drift-own"],
            },
        },
        "batching": {
            "full_stream": {str(MAIN_BATCH): runs["main-agg"], "2048": runs["full-2048"]},
            "sub_stream": {
                **{str(b): runs[f"sub-{b}"] for b in BATCH_SIZES},
                **{_adaptive(a.name): runs[f"sub-{a.name}"] for a in ARRIVALS},
            },
        },
        "statistics": _statistics(arrays, plan),
    }


def _statistics(arrays: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Paired AUC differences with 90 % intervals from a bootstrap over customers."""
    drift_at = plan.drift.drift_at or 0
    return {
        "method": f"paired bootstrap over customers, {RESAMPLES} resamples, 90 % interval",
        "aggregates_lift": {
            "no_drift": paired_delta(arrays["main-agg"], arrays["main-own"], plan.warmup),
            "drift": paired_delta(arrays["drift-agg"], arrays["drift-own"], plan.warmup),
            "drift_after_drift": paired_delta(arrays["drift-agg"], arrays["drift-own"], drift_at),
        },
        "batch_vs_size_1": {
            str(b): {
                "all": paired_delta(arrays[f"sub-{b}"], arrays["sub-1"]),
                "after_warmup": paired_delta(arrays[f"sub-{b}"], arrays["sub-1"], plan.warmup),
            }
            for b in BATCH_SIZES[1:]
        },
        "adaptive_vs_size_1": {
            _adaptive(a.name): {
                "all": paired_delta(arrays[f"sub-{a.name}"], arrays["sub-1"]),
                "after_warmup": paired_delta(arrays[f"sub-{a.name}"], arrays["sub-1"], plan.warmup),
            }
            for a in ARRIVALS
        },
        "whole_stream_2048_vs_256": paired_delta(
            arrays["full-2048"], arrays["main-agg"], plan.warmup
        ),
    }


def _adaptive(arrival: str) -> str:
    """The name of an adaptive variant in the results: ``adaptive backlog``, ..."""
    return f"adaptive {arrival}"


@lru_cache(maxsize=2)
def _stream(spec: StreamSpec) -> list[Any]:
    return build_stream(spec)


def _replay_job(
    spec: StreamSpec,
    sub_events: int | None,
    batch_size: int | str,
    aggregates: bool,
    warmup: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One replay; ``batch_size`` a fixed size, or the name of an arrival (adaptive batching)."""
    stream = _stream(spec)
    events = spec.events
    if sub_events is not None:
        stream, events = sub_stream(stream, sub_events), sub_events
    if isinstance(batch_size, str):
        arrival = next(a for a in ARRIVALS if a.name == batch_size)
        result, chosen = replay_adaptive(stream, arrival, aggregates=aggregates)
        return {**result.summary(events, warmup), "boundaries": chosen}, result.arrays()
    result = replay(stream, batch_size=batch_size, aggregates=aggregates)
    return result.summary(events, warmup), result.arrays()


# --- part 3: end to end -----------------------------------------------------------------------


def _end_to_end(plan: Plan, profile: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    spied = None
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_server:
        began = time.monotonic()
        e2e = run_end_to_end(plan.stream, broker.bootstrap, redis_server.url, "retention-e2e")
        print(
            f"end to end: {e2e['events_per_s']:,} events/s ({e2e['messages_per_s']:,} messages/s)"
            f" [{time.monotonic() - began:.0f} s]",
            flush=True,
        )
        if profile:
            path = Path(os.environ.get("TMPDIR", "/tmp")) / f"retention-spy-{os.getpid()}.txt"
            profiled = run_end_to_end(
                plan.stream, broker.bootstrap, redis_server.url, "retention-spy", profile=path
            )
            spied = {
                "events_per_s_while_sampled": profiled["events_per_s"],
                "processing_s": profiled["processing_s"],
                **summarise(path, PROFILE_RATE_HZ),
            }
            path.unlink(missing_ok=True)
    return e2e, spied


def write(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``retention.json`` and ``retention.md`` into ``directory`` (each atomically)."""
    return write_results(results, markdown(results), directory, "retention")


if __name__ == "__main__":
    main()
