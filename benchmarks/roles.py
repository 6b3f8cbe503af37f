"""``python -m benchmarks.roles [--quick]``: scale-out roles (issue 10), measured in one run.

One embedded broker (Tansu), one Redis and one load-generator process serve every part; every
streamlearn process is a real ``python -m streamlearn run CONFIG --role ROLE`` with the fraud
example's configuration (its own group, Redis prefix, learn topic and metrics port per part).
The stream is the fraud generator's (seed 10, the pattern changing half-way, the label inline),
written once to a 4-partition topic that each backlog part reads from the beginning.

1. CPU per event, summed over every streamlearn process, from the backlog until the learner
   has learned every event: (i) 1 scorer + learner, (ii) 2 scorers + learner; the broker's and
   Redis's CPU over the same time.
2. Ceilings, each process alone from a backlog: a fresh learner reading (i)'s learn topic from
   the beginning, and one scorer (with (i)'s published model, no learner running).
3. Prequential AUC of the served scores, read back from ``outputs.predictions_topic``: the
   single process (``--role all``) and 2 scorers + learner, each at the steady rate of (4) on the
   whole stream; also from the backlog.
4. Staleness: 2 scorers + learner while the generator sends the stream at a steady rate; each
   scorer's ``streamlearn_model_staleness_seconds`` read every 100 ms.
5. A capacity model from the per-event CPU (see :mod:`benchmarks.roles_report`).

Results go to ``benchmarks/results/roles.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import LoadGenerator
from benchmarks.report import machine_info
from benchmarks.roles_measure import (
    Watched,
    counted,
    served_auc,
    served_from_examples,
    served_from_predictions,
    watch,
)
from benchmarks.roles_report import report, targets
from benchmarks.roles_run import RoleProcess, Setup, cpu_seconds, metric, stop_all
from benchmarks.roles_steady import PARTITIONS, PUBLISH_INTERVAL_MS, SteadyRuns, say
from connectors.embedded import EmbeddedBroker, EmbeddedRedis
from connectors.kafka import ensure_topics, read_all

RESULTS = Path(__file__).parent / "results"
SEED = 10


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one run: the stream's length and the steady rate it is sent at in (3) and (4).

    >>> FULL.drift_at, round(FULL.steady_s, 1), QUICK.steady_s
    (100000, 100.0, 8.0)
    """

    events: int
    steady_rate: float

    @property
    def drift_at(self) -> int:
        """The fraud pattern changes half-way."""
        return self.events // 2

    @property
    def steady_s(self) -> float:
        """How long the whole stream takes at the steady rate."""
        return self.events / self.steady_rate


FULL = Plan(200_000, 2_000.0)
QUICK = Plan(16_000, 2_000.0)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.roles", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 000 events, ~2 minutes")
    parser.add_argument("--rate", type=float, help="the steady rate, events/s")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    plan = QUICK if args.quick else FULL
    if args.rate:
        plan = Plan(plan.events, args.rate)
    results = run(plan, quick=args.quick)
    json_path, md_path = report(results, args.out)
    print(f"results written to {json_path} and {md_path}")
    print(md_path.read_text())


def run(plan: Plan, quick: bool) -> dict[str, Any]:
    """Every part against one broker, one Redis and one generator; every figure."""
    machine = machine_info()
    started = time.monotonic()
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as redis_server,
        LoadGenerator(broker.bootstrap, seed=SEED) as load,
        tempfile.TemporaryDirectory(prefix="roles-") as tmp,
    ):
        services = {"broker": _pid(broker), "redis": _pid(redis_server)}
        bench = _Bench(broker.bootstrap, redis_server.url, load, plan, Path(tmp), services)
        results: dict[str, Any] = {"backlog": bench.backlog()}
        results["variants"] = {"i": bench.split("i", 1), "ii": bench.split("ii", 2)}
        results["ceilings"] = {
            "learner": bench.learner_alone("roles-i-learn"),
            "scorer": bench.scorer_alone("rb-i"),
        }
        results["single_backlog"] = bench.single_backlog()
        results["steady"] = {"split": bench.steady(2), "all": bench.steady(0)}
    machine["load_average_at_end"] = os.getloadavg()
    results.update(
        quick=quick,
        machine=machine,
        wall_seconds=round(time.monotonic() - started, 1),
        plan={
            "events": plan.events,
            "drift_at": plan.drift_at,
            "steady_rate": plan.steady_rate,
            "steady_s": plan.steady_s,
            "partitions": PARTITIONS,
            "seed": SEED,
        },
        publish_interval_ms=PUBLISH_INTERVAL_MS,
    )
    results["targets"] = targets(results)
    return results


class _Bench(SteadyRuns):
    def __init__(
        self,
        bootstrap: str,
        redis_url: str,
        load: LoadGenerator,
        plan: Plan,
        directory: Path,
        services: dict[str, int],
    ) -> None:
        self.bootstrap, self.redis_url, self.load, self.plan = bootstrap, redis_url, load, plan
        self.directory, self.services = directory, services
        self.topic = "roles-events"
        self.timeout_s = 120.0 + plan.events / 1000
        self.order, self.labels = _stream(plan)

    def setup(self, name: str, **options: Any) -> Setup:
        options.setdefault("topic", self.topic)
        options.setdefault("learn_topic", f"roles-{name}-learn")
        return Setup(
            self.bootstrap, self.redis_url, group=f"roles-{name}", prefix=f"rb-{name}", **options
        )

    def process(self, name: str, role: str, setup: Setup) -> RoleProcess:
        return RoleProcess(name, role, setup, self.directory)

    def backlog(self) -> dict[str, Any]:
        """The stream, produced to the events topic before anything reads it."""
        n = self.plan.events
        ensure_topics(self.bootstrap, [self.topic], partitions=PARTITIONS)
        self.load.prepare(n, self.plan.drift_at)
        broker_cpu = cpu_seconds(self.services["broker"]) if self.services["broker"] else 0.0
        produced = self.load.produce(self.topic, [(None, 0.0)], unpaced_events=n)
        ingest = cpu_seconds(self.services["broker"]) - broker_cpu if self.services["broker"] else 0
        say(f"backlog: {produced.events:,} events in {produced.seconds:.1f} s")
        return {
            "topic": self.topic,
            "events": produced.events,
            "seconds": round(produced.seconds, 2),
            "broker_ingest_us_per_event": round(ingest / n * 1e6, 2),
        }

    def split(self, name: str, scorers: int) -> dict[str, Any]:
        """``scorers`` scorers and a learner over the backlog, until all is learned.

        The scorers start first: with no model published yet each holds its first batch and
        waits, so the group settles (every scorer holds partitions) before anything is scored;
        the learner starts then, publishes its model, and the scorers take it up.
        """
        setup = self.setup(name)
        learner = self.process(f"{name}-learner", "learner", setup)
        scoring = [self.process(f"{name}-scorer-{i + 1}", "scorer", setup) for i in range(scorers)]
        procs = [p.start() for p in scoring]

        def start_learner(latest: dict[str, Any]) -> None:
            if not learner.pid and all(
                metric(latest[s.name], "streamlearn_events_consumed_total") for s in scoring
            ):
                procs.append(learner.start())

        try:
            n = self.plan.events
            milestones = {
                "scored": counted("predictions", scoring, n),
                "learned": counted("learned", [learner], n),
            }
            watched = watch([*scoring, learner], self.services, milestones, self.timeout_s,
                            start_learner)  # fmt: skip
        finally:
            stop_all(procs)
        figures = _figures(watched, self.plan.events)
        served = served_from_examples(r.value for r in self.read(setup.learn_topic, figures))
        figures["served_from_learn_topic"] = served_auc(served, self.labels, self.order)
        say(_line(f"({name}) {scorers} scorer(s) + learner", figures))
        return figures

    def learner_alone(self, learn_topic: str) -> dict[str, Any]:
        """A fresh learner (own prefix and group) reading ``learn_topic`` from the beginning."""
        setup = self.setup("learner-alone", learn_topic=learn_topic)
        learner = self.process("learner-alone", "learner", setup).start()
        try:
            n = self.plan.events
            milestones = {"learned": counted("learned", [learner], n)}
            figures = _figures(watch([learner], self.services, milestones, self.timeout_s), n)
        finally:
            learner.stop()
        figures["events_per_s"] = figures["rates"]["learned"]
        say(_line("learner alone", figures))
        return figures

    def scorer_alone(self, prefix: str) -> dict[str, Any]:
        """One scorer from the backlog with the model published under ``prefix``, no learner."""
        setup = dataclasses.replace(self.setup("scorer-alone"), prefix=prefix)
        scorer = self.process("scorer-alone", "scorer", setup).start()
        try:
            n = self.plan.events
            milestones = {"scored": counted("predictions", [scorer], n)}
            figures = _figures(watch([scorer], self.services, milestones, self.timeout_s), n)
        finally:
            scorer.stop()
        figures["events_per_s"] = figures["rates"]["scored"]
        say(_line("scorer alone", figures))
        return figures

    def single_backlog(self) -> dict[str, Any]:
        """``--role all`` from the backlog, with a predictions topic (for its served AUC)."""
        setup = self.setup("all", predictions_topic="roles-all-predictions")
        single = self.process("all", "all", setup).start()
        try:
            n = self.plan.events
            milestones = {
                "scored": counted("predictions", [single], n),
                "learned": counted("learned", [single], n),
            }
            figures = _figures(watch([single], self.services, milestones, self.timeout_s), n)
        finally:
            single.stop()
        records = self.read("roles-all-predictions", figures)
        figures["served"] = served_auc(
            served_from_predictions(r.value for r in records), self.labels, self.order
        )
        say(_line("single process (--role all)", figures))
        return figures

    def read(self, topic: str, figures: dict[str, Any]) -> list[Any]:
        """Every record of ``topic``; the bytes per event go into ``figures``."""
        records = read_all(self.bootstrap, topic, timeout_s=60)
        figures.setdefault("topics", {})[topic] = {
            "messages": len(records),
            "bytes_per_event": round(sum(len(r.value) for r in records) / self.plan.events, 1),
        }
        return records


def _figures(watched: Watched, n: int) -> dict[str, Any]:
    """Per-event CPU by process, role and service, and the rates, of a backlog run."""
    procs = watched.processes
    work = sum(p["work_cpu_s"] for p in procs.values())
    by_role: dict[str, float] = {}
    for p in procs.values():
        by_role[p["role"]] = by_role.get(p["role"], 0.0) + p["work_cpu_s"]
    scored = sum(p["predictions"] for p in procs.values())
    return {
        "events": n,
        "processes": procs,
        "total_cpu_us_per_event": round(work / n * 1e6, 2),
        "role_cpu_us_per_event": {k: round(v / n * 1e6, 2) for k, v in by_role.items()},
        "services_us_per_event": {
            k: round(v / n * 1e6, 2) for k, v in watched.services_cpu_s.items()
        },
        "seconds": watched.marks,
        "rates": {k: round(n / v, 1) for k, v in watched.marks.items() if v > 0},
        "scored_twice": max(0, scored - n) if scored else 0,
    }


def _stream(plan: Plan) -> tuple[list[str], dict[str, int]]:
    """The stream's event ids in order and each one's label (what the generator sent)."""
    from streamlearn.generators.fraud import FraudGenerator

    events = FraudGenerator(seed=SEED, drift_at=plan.drift_at).events(plan.events)
    order, labels = [], {}
    for e in events:
        order.append(e["event_id"])
        labels[e["event_id"]] = int(e["is_fraud"])
    return order, labels


def _pid(service: Any) -> int:
    """The pid of an embedded service's child process (0 if it cannot be found)."""
    process = getattr(service, "_process", None)
    return int(getattr(process, "pid", 0) or 0)


def _line(name: str, f: dict[str, Any]) -> str:
    rates = ", ".join(f"{k} {v:,.0f} ev/s" for k, v in f["rates"].items())
    return (
        f"{name}: {f['total_cpu_us_per_event']:.1f} µs/event CPU "
        f"{f['role_cpu_us_per_event']} services {f['services_us_per_event']}; {rates}"
    )


if __name__ == "__main__":
    main()
