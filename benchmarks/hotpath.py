"""``python -m benchmarks.hotpath [--quick]``: the hot-path benchmark of issue 9, in one run.

One embedded broker (Tansu), one Redis and one load-generator process serve every variant; each
variant runs in a fresh spawned process and reads the same backlog topic (2 partitions, the
fraud stream with its ``is_fraud`` label inline and the pattern drifting half-way) from the
beginning, in a consumer group of its own:

- (a) raw consume ceiling: kafka-python poll + ``orjson.loads`` of every record (the engine's
  fetch settings; once more with kafka-python's defaults, which Tansu's fetch hold caps);
- (b) hand-written per-event loop: kafka-python + river predict / one HSET / learn, commit per poll;
- (c) the same job as a Quix Streams app (in its own virtual environment, see ``hotpath_quix``);
- (d) streamlearn with the default fraud configuration (the real App); also at batch size 1,
  profiled by py-spy, and over a separate 1 000 000-event backlog for memory;
- (d') the same with ``kafka.client: confluent`` (librdkafka), and (a') the raw consume
  ceiling through that source;
- (e) latency floor: decode and one HSET per event, no model.

Then (e) and (d) each read a fresh topic while the generator sends at one steady rate (the
highest tried where (e) keeps 90 % within target), for the share of events written within
100 ms of their Kafka record timestamp. Results go to
``benchmarks/results/hotpath.{json,md}``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.analysis import latency_summary
from benchmarks.hotpath_child import Child, Read, run_child
from benchmarks.hotpath_engine import EngineRun, run_engine
from benchmarks.hotpath_loops import (
    consume_raw,
    consume_raw_source,
    latency_floor,
    per_event_loop,
)
from benchmarks.hotpath_profile import summarise
from benchmarks.hotpath_quix import run_quix
from benchmarks.hotpath_report import confluent_ratios, targets, write
from benchmarks.load import LoadGenerator
from benchmarks.report import machine_info
from connectors.embedded import EmbeddedBroker, EmbeddedRedis
from connectors.kafka import ensure_topics

RESULTS = Path(__file__).parent / "results"
SEED = 9
PARTITIONS = 2
TARGET_MS = 100.0
_PROFILE_HZ = 200


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one run.

    >>> FULL.events, FULL.drift_at, FULL.memory_events, QUICK.memory_events
    (200000, 100000, 1000000, 0)
    """

    events: int
    memory_events: int  # 0: no memory run
    repeats: int  # runs of the short variants (a) and (d); the median is reported
    size1_cap_s: float  # batch-size-1 (d) stops after this long
    steady_rate: float
    steady_s: float

    @property
    def drift_at(self) -> int:
        """The fraud pattern changes half-way."""
        return self.events // 2


FULL = Plan(200_000, 1_000_000, 3, 20.0, 9_000.0, 15.0)
QUICK = Plan(40_000, 0, 1, 5.0, 9_000.0, 4.0)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 000 events, no 1M memory run")
    parser.add_argument("--rate", type=float, help="the steady rate (events/s), default 9000")
    parser.add_argument("--no-steady", action="store_true", help="leave the steady-rate part out")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    plan = QUICK if args.quick else FULL
    if args.rate:
        plan = Plan(**{**_fields(plan), "steady_rate": args.rate})
    results = run(plan, quick=args.quick, steady=not args.no_steady)
    json_path, md_path = write(results, args.out)
    print(f"results written to {json_path} and {md_path}")
    print(md_path.read_text())


def run(plan: Plan, quick: bool, steady: bool = True) -> dict[str, Any]:
    """Every variant against one broker, one Redis and one generator; every figure."""
    machine = machine_info()
    started = time.monotonic()
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as redis_server,
        LoadGenerator(broker.bootstrap, seed=SEED) as load,
        tempfile.TemporaryDirectory(prefix="hotpath-") as tmp,
    ):
        bench = _Bench(broker.bootstrap, redis_server.url, load, plan)
        produced = bench.backlog("hotpath-events", plan.events, plan.drift_at)
        variants = bench.variants()
        profile = bench.profile(Path(tmp) / "engine.raw")
        floor_rate = variants["e"].get("events_per_s")
        rates = bench.steady(floor_rate) if steady else {"skipped": "--no-steady"}
        memory = bench.memory() if plan.memory_events else {"skipped": "--quick"}
    machine["load_average_at_end"] = os.getloadavg()
    results: dict[str, Any] = {
        "quick": quick,
        "machine": machine,
        "wall_seconds": round(time.monotonic() - started, 1),
        "plan": {**_fields(plan), "drift_at": plan.drift_at, "partitions": PARTITIONS},
        "seed": SEED,
        "backlog": produced,
        "variants": variants,
        "profile": profile,
        "steady": rates,
        "memory": memory,
        "target_ms": TARGET_MS,
    }
    results["targets"] = targets(results)
    results["confluent"] = confluent_ratios(results)
    results["confluent_kafka"] = _confluent_version()
    return results


class _Bench:
    def __init__(self, bootstrap: str, redis_url: str, load: LoadGenerator, plan: Plan) -> None:
        self.bootstrap, self.redis_url, self.load, self.plan = bootstrap, redis_url, load, plan
        self.topic = "hotpath-events"

    def read(self, group: str, **options: Any) -> Read:
        options.setdefault("events", self.plan.events)
        options.setdefault("topic", self.topic)
        return Read(self.bootstrap, self.redis_url, group=f"hotpath-{group}", **options)

    def backlog(self, topic: str, events: int, drift_at: int) -> dict[str, Any]:
        """Produce ``events`` fraud events to a fresh topic before anything reads it."""
        ensure_topics(self.bootstrap, [topic], partitions=PARTITIONS)
        self.load.prepare(events, drift_at)
        produced = self.load.produce(topic, [(None, 0.0)], unpaced_events=events)
        _say(f"backlog {topic}: {produced.events:,} events in {produced.seconds:.1f} s")
        return {
            "topic": topic,
            "events": produced.events,
            "drift_at": drift_at,
            "seconds": round(produced.seconds, 1),
        }

    def variants(self) -> dict[str, Any]:
        """(a) to (e) over the backlog; (a), (a'), (d) and (d') ``repeats`` times each."""
        plan, out = self.plan, {}
        out["a"] = self.repeat("a", lambda i: run_child(consume_raw, self.read(f"a{i}")))
        out["a_source"] = self.repeat(
            "a''", lambda i: run_child(consume_raw_source, self.read(f"a-source{i}"))
        )
        out["a_confluent"] = self.repeat(
            "a'", lambda i: run_child(consume_raw_source, self.read(f"a-confluent{i}"), True)
        )
        out["a_defaults"] = run_child(consume_raw, self.read("a-defaults"), True)
        _say(_line("a (kafka-python fetch defaults)", out["a_defaults"]))
        out["b"] = _scored(run_child(per_event_loop, self.read("b")), plan)
        _say(_line("b", out["b"]))
        quix = run_quix(self.read("c"))
        out["c"] = quix if "skipped" in quix else _scored(quix, plan)
        _say(_line("c", out["c"]))
        # (d) and (d') alternate run by run, so both see the machine's conditions alike.
        engine, confluent = self.paired(
            ("d", lambda i: self.engine(f"d{i}", EngineRun(f"hp-d{i}", rss_every=50_000))),
            (
                "d'",
                lambda i: self.engine(
                    f"d-confluent{i}",
                    EngineRun(f"hp-dc{i}", rss_every=50_000, client="confluent"),
                ),
            ),
        )
        out["d"], out["d_confluent"] = engine, confluent
        size1 = run_child(
            run_engine,
            self.read("d-size1", time_cap_s=plan.size1_cap_s),
            EngineRun("hp-d-size1", batch_size=1, record_served=False),
        )
        out["d_size1"] = size1
        _say(_line("d size 1", size1))
        floor = run_child(latency_floor, self.read("e"))
        floor.pop("latencies_s")
        out["e"] = floor
        _say(_line("e", floor))
        return out

    def engine(self, group: str, run: EngineRun) -> dict[str, Any]:
        """One engine run over the backlog, with the AUC of its served scores."""
        return _scored(run_child(run_engine, self.read(group), run), self.plan)

    def paired(
        self, *variants: tuple[str, Callable[[int], dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Like :meth:`repeat` for several variants, alternating them run by run."""
        runs: list[list[dict[str, Any]]] = [[] for _ in variants]
        for i in range(self.plan.repeats):
            for (name, once), done in zip(variants, runs):
                done.append(once(i))
                _say(_line(f"{name} #{i + 1}", done[-1]))
        return [_median_run(done) for done in runs]

    def repeat(self, name: str, once: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Run ``once`` ``repeats`` times; the run of median events/s, with every run's rate."""
        runs = []
        for i in range(self.plan.repeats):
            runs.append(once(i))
            _say(_line(f"{name} #{i + 1}", runs[-1]))
        return _median_run(runs)

    def profile(self, path: Path) -> dict[str, Any]:
        """(d) over the backlog once more, sampled by py-spy: where its time goes."""
        figures = run_child(
            run_engine,
            self.read("d-profile"),
            EngineRun("hp-d-profile", record_served=False),
            profile=path,
        )
        _say(_line("d profiled", figures))
        summary = summarise(path, _PROFILE_HZ, figures["seconds"])
        return {
            "events": figures["events"],
            "events_per_s_while_profiled": figures["events_per_s"],
            "stage_us_per_event": figures["stage_us_per_event"],
            **summary,
        }

    def steady(self, floor_rate: float | None) -> dict[str, Any]:
        """(e), then (d) at the rate where (e) kept 90 % within target, each on a fresh topic.

        The first rate tried is the plan's, or 80 % of (e)'s backlog rate (``floor_rate``) if
        that is lower; while (e) keeps under 90 % within target the rate drops by a third.
        """
        plan = self.plan
        rate = plan.steady_rate
        if floor_rate:
            rate = min(rate, 500.0 * int(0.8 * floor_rate / 500))
        tried = []
        for _ in range(3):
            tried.append(self.steady_one("e", latency_floor, rate, ()))
            if tried[-1]["within_target"] >= 0.9 or rate <= 1000:
                break
            rate = max(1000.0, 500.0 * int(rate * 2 / 3 / 500))
        engine = EngineRun("hp-steady-d", record_served=False, keep_latencies=True)
        d = self.steady_one("d", run_engine, rate, (engine,))
        return {
            "rate": rate,
            "seconds": plan.steady_s,
            "e": tried[-1],
            "d": d,
            "e_tries": [{k: t[k] for k in ("rate", "within_target", "p99_ms")} for t in tried],
        }

    def steady_one(
        self, name: str, target: Callable[..., dict[str, Any]], rate: float, extra: tuple[Any, ...]
    ) -> dict[str, Any]:
        """One variant reading a fresh topic while the generator sends at ``rate``."""
        seconds = self.plan.steady_s
        topic = f"hotpath-steady-{name}-{rate:.0f}"
        ensure_topics(self.bootstrap, [topic], partitions=PARTITIONS)
        read = self.read(
            f"steady-{name}-{rate:.0f}", topic=topic, events=int(rate * seconds), idle_stop_s=3.0
        )
        child = Child(target, read, *extra)
        child.wait_ready()
        produced = self.load.produce(topic, [(rate, seconds)])
        figures = child.result()
        latencies = figures.pop("latencies_s")
        figures.update(latency_summary(latencies, produced.events, TARGET_MS))
        figures.update(rate=rate, offered_rate=round(produced.rate, 1), produced=produced.events)
        _say(
            f"steady {_line(name, figures)} within {figures['within_target']:.1%}"
            f" p50 {figures['p50_ms']:.0f} ms p99 {figures['p99_ms']:.0f} ms"
        )
        return {k: v for k, v in figures.items() if k not in ("scores", "labels")}

    def memory(self) -> dict[str, Any]:
        """(d) over a separate backlog of ``memory_events``: RSS every 100 000 events."""
        n = self.plan.memory_events
        produced = self.backlog("hotpath-memory", n, n // 2)
        figures = run_child(
            run_engine,
            self.read("d-memory", topic="hotpath-memory", events=n, timeout_s=900.0),
            EngineRun("hp-d-memory", record_served=False, rss_every=100_000),
        )
        _say(_line("d memory", figures) + f" rss {figures['rss_marks']}")
        return {"backlog": produced, **figures}


def _confluent_version() -> str | None:
    """confluent-kafka's version and its librdkafka's, if installed."""
    try:
        import confluent_kafka
    except ImportError:
        return None
    version: Any = confluent_kafka.version()  # a string, or (string, int) in older releases
    version = version[0] if isinstance(version, tuple) else version
    return f"{version} (librdkafka {confluent_kafka.libversion()[0]})"


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median events/s, with every run's rate, AUC and the spread."""
    rates = [r["events_per_s"] or 0.0 for r in runs]
    aucs = [r["served"]["auc"] for r in runs if r.get("served")]
    median = sorted(runs, key=lambda r: r["events_per_s"] or 0.0)[len(runs) // 2]
    spread = 100 * (max(rates) - min(rates)) / max(statistics.median(rates), 1.0)
    return {
        **median,
        "runs_events_per_s": rates,
        "spread_pct": round(spread, 1),
        "runs_auc": aucs,
    }


def _scored(figures: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """``figures`` with the exact prequential AUC of its served scores instead of the scores."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(figures.pop("scores"), dtype=np.float64)
    labels = np.asarray(figures.pop("labels")).astype(int)
    half = len(labels) // 2

    def auc(s: np.ndarray, y: np.ndarray) -> float | None:
        return round(float(roc_auc_score(y, s)), 4) if 0 < y.sum() < len(y) else None

    figures["served"] = {
        "labels": len(labels),
        "positives": int(labels.sum()),
        "auc": auc(scores, labels),
        "auc_first_half": auc(scores[:half], labels[:half]),
        "auc_second_half": auc(scores[half:], labels[half:]),
    }
    return figures


def _fields(plan: Plan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in plan.__slots__}


def _line(name: str, f: dict[str, Any]) -> str:
    if "skipped" in f:
        return f"{name}: skipped ({f['skipped'][:200]})"
    auc = f" AUC {f['served']['auc']}" if f.get("served") else ""
    rate = f.get("events_per_s") or 0.0
    return f"{name}: {f['events']:,} events in {f['seconds']:.1f} s = {rate:,.0f} ev/s{auc}"


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


if __name__ == "__main__":
    main()
