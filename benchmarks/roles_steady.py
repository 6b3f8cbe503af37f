"""The roles benchmark's steady-rate parts: the stream sent at a steady rate to a fresh topic,
read by 2 scorers + learner (staleness sampled) or by the single process; CPU, latency and the
served AUC read back from the predictions topic."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.load import LoadGenerator
from benchmarks.roles_measure import (
    StalenessSampler,
    counted,
    counters,
    served_auc,
    served_from_examples,
    served_from_predictions,
    staleness_summary,
)
from benchmarks.roles_run import RoleProcess, Setup, cpu_seconds, metric, stop_all, wait_until
from connectors.kafka import ensure_topics
from streamlearn.config import RolesConfig

PARTITIONS = 4
PUBLISH_INTERVAL_MS = float(RolesConfig().publish_interval_ms)  # the default
WARMUP_S = 3.0  # staleness samples this soon after sending began show the idle time before
IDLE_S = 3.0  # idle CPU measured over this long before sending
_LATENCY = "streamlearn_event_latency_seconds"


class SteadyRuns:
    """The steady-rate parts of :class:`benchmarks.roles._Bench` (which provides the rest)."""

    bootstrap: str
    load: LoadGenerator
    plan: Any  # benchmarks.roles.Plan
    services: dict[str, int]
    order: list[str]
    labels: dict[str, int]

    def setup(self, name: str, **options: Any) -> Setup:
        raise NotImplementedError

    def process(self, name: str, role: str, setup: Setup) -> RoleProcess:
        raise NotImplementedError

    def read(self, topic: str, figures: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def steady(self, scorers: int) -> dict[str, Any]:
        """The stream sent at the steady rate to a fresh topic: ``scorers`` + learner, or
        (``scorers == 0``) the single process; staleness sampled, served AUC read back."""
        kind = "split" if scorers else "all"
        topic = f"roles-steady-{kind}"
        ensure_topics(self.bootstrap, [topic], partitions=PARTITIONS)
        setup = self.setup(f"steady-{kind}", topic=topic, predictions_topic=f"{topic}-predictions")
        procs: list[RoleProcess] = []
        front: list[RoleProcess] = []
        sampler = StalenessSampler(front)
        try:
            if scorers:
                procs.append(self.process("steady-learner", "learner", setup).start())
                wait_until(procs[0].ready, 90, "the learner", *procs)
                names = [f"steady-scorer-{i + 1}" for i in range(scorers)]
            else:
                names = ["steady-all"]
            front += [
                self.process(name, "all" if not scorers else "scorer", setup) for name in names
            ]
            procs += [p.start() for p in front]
            wait_until(lambda: all(p.ready() for p in procs), 90, "every process ready", *procs)
            figures = self.send_steady(topic, procs, front, sampler if scorers else None)
        finally:
            sampler.halt.set()
            stop_all(procs)
        records = self.read(f"{topic}-predictions", figures)
        served = served_from_predictions(r.value for r in records)
        figures["served"] = served_auc(served, self.labels, self.order)
        if scorers:
            examples = self.read(setup.learn_topic, figures)
            served = served_from_examples(r.value for r in examples)
            figures["served_from_learn_topic"] = served_auc(served, self.labels, self.order)
            figures["staleness"] = staleness_summary(sampler.samples, PUBLISH_INTERVAL_MS, WARMUP_S)
        say(
            f"steady {kind} at {figures['offered_rate']:,.0f} ev/s: AUC {figures['served']['auc']}"
            f", within 100 ms {figures['within_100ms']}, {figures['total_cpu_us_per_event']} µs/ev"
            + (f", staleness {figures['staleness']['steady']}" if scorers else "")
        )
        return figures

    def send_steady(
        self,
        topic: str,
        procs: list[RoleProcess],
        front: list[RoleProcess],
        sampler: StalenessSampler | None,
    ) -> dict[str, Any]:
        """Idle CPU over ``IDLE_S``, then the stream at the steady rate until all is learned."""
        time.sleep(1.0)  # a rebalance after the last join settles
        idle_cpu, idle_services = self.cpu(procs)
        time.sleep(IDLE_S)
        cpu, services = self.cpu(procs)
        idle = {k: round((cpu[k] - idle_cpu[k]) / IDLE_S, 3) for k in cpu}
        idle.update({k: round((services[k] - idle_services[k]) / IDLE_S, 3) for k in services})
        if sampler is not None:
            sampler.start()
        produced = self.load.produce(topic, [(self.plan.steady_rate, self.plan.steady_s)])
        if sampler is not None:
            sampler.halt.set()
        sent_at, n = time.monotonic(), produced.events
        learners = [p for p in procs if p.role != "scorer"]
        wait_until(
            lambda: (
                counted("predictions", front, n)({p.name: p.metrics() for p in front})
                and counted("learned", learners, n)({p.name: p.metrics() for p in learners})
            ),
            60,
            "everything sent to be scored and learned",
            *procs,
        )
        drained_s = time.monotonic() - sent_at
        cpu_end, services_end = self.cpu(procs)
        final = {p.name: p.metrics() for p in procs}
        within = sum(metric(final[p.name], _LATENCY + "_bucket", le="0.1") for p in front)
        count = sum(metric(final[p.name], _LATENCY + "_count") for p in front)
        return {
            "rate": self.plan.steady_rate,
            "offered_rate": round(produced.rate, 1),
            "events": n,
            "drained_after_send_s": round(drained_s, 2),
            "within_100ms": round(within / count, 4) if count else None,
            "idle_cores": idle,
            "cpu_us_per_event": {k: round((v - cpu[k]) / n * 1e6, 2) for k, v in cpu_end.items()},
            "total_cpu_us_per_event": round(
                sum(cpu_end.values()) / n * 1e6 - sum(cpu.values()) / n * 1e6, 2
            ),
            "services_us_per_event": {
                k: round((v - services[k]) / n * 1e6, 2) for k, v in services_end.items()
            },
            "processes": {name: counters(samples) for name, samples in final.items()},
        }

    def cpu(self, procs: list[RoleProcess]) -> tuple[dict[str, float], dict[str, float]]:
        """CPU seconds so far of each process, and of each service."""
        services = {k: cpu_seconds(pid) if pid else 0.0 for k, pid in self.services.items()}
        return {p.name: p.cpu() for p in procs}, services


def say(text: str) -> None:
    """Print a progress line with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
