"""``python -m benchmarks.roles_scaling``: scorer replicas on a many-core machine (issue 10).

Meant for a machine with more cores than this 2-core one (it was run on a 16-core machine lent
for a few minutes, with the wheels, the Tansu binary and a ``redis-server`` carried there).
One embedded broker and one Redis; a fraud backlog on a topic with ``--partitions`` partitions.
For each N in ``--scorers``, a fresh learner and N fresh scorers (their own group, Redis prefix
and learn topic) read the backlog from the beginning. Once every scorer answers ``/readyz``,
each process's counters (``streamlearn_predictions_total``, ``streamlearn_learned_total``) are
read every half second; the rates are taken over the window in which all N scorers were
scoring, so process start and group joins are left out. CPU seconds (``/proc``) of every
process, the broker and Redis over the same window give the cost per event.

Results: ``--out`` (JSON and markdown), by default ``benchmarks/results/roles_scaling.*``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.load import LoadGenerator
from benchmarks.report import machine_info, write_results
from connectors.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from connectors.kafka import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "scaling"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc`` (0.0 once it is gone).

    >>> cpu_seconds(os.getpid()) > 0
    True
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def counter(text: str, name: str) -> float:
    """Sum of every sample of metric ``name`` in a Prometheus text page.

    >>> counter('a_total{p="x"} 3.0\\na_total{p="y"} 2.0\\nb 1\\n', "a_total")
    5.0
    """
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rpartition(" ")[2])
    return total


@dataclass
class Role:
    """One ``streamlearn run --role`` child process."""

    role: str
    port: int
    process: subprocess.Popen[bytes]

    def page(self, path: str = "/metrics") -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        return self.page("/readyz")[0] == 200

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(role: str, base: dict[str, Any], run_dir: Path, name: str) -> Role:
    """Start one role with a metrics port of its own."""
    config = copy.deepcopy(base)
    port = free_port()
    config["metrics"] = {"host": "127.0.0.1", "port": port}
    path = run_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    log = (run_dir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlearn",
            "run",
            str(path),
            "--role",
            role,
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Role(role, port, process)


@dataclass
class Sample:
    """Counters and CPU at one moment."""

    at: float
    predicted: float
    learned: float
    cpu: dict[str, float] = field(default_factory=dict)


def sample(scorers: list[Role], learner: Role, services: dict[str, int]) -> Sample:
    with ThreadPoolExecutor(len(scorers) + 1) as pool:
        pages = list(pool.map(lambda r: r.page()[1], [*scorers, learner]))
    cpu = {f"scorer-{i}": cpu_seconds(s.process.pid) for i, s in enumerate(scorers)}
    cpu["learner"] = cpu_seconds(learner.process.pid)
    cpu.update({name: cpu_seconds(pid) for name, pid in services.items()})
    return Sample(
        time.monotonic(),
        sum(counter(p, "streamlearn_predictions_total") for p in pages[:-1]),
        counter(pages[-1], "streamlearn_learned_total"),
        cpu,
    )


def measure(
    n: int, base: dict[str, Any], events: int, services: dict[str, int], work: Path
) -> dict[str, Any]:
    """One learner and ``n`` scorers from the backlog; rates over the all-scoring window."""
    tag = f"n{n}-{int(time.time())}"
    config = copy.deepcopy(base)
    config["redis"]["prefix"] = f"s{tag}"
    pipeline = config["pipelines"][0]
    pipeline["source"] = {"topic": TOPIC, "group": f"g-{tag}", "start": "earliest"}
    pipeline["roles"] = {"learn_topic": f"learn-{tag}", "publish_interval_ms": 1000}
    run_dir = work / tag
    run_dir.mkdir()
    learner = start("learner", config, run_dir, "learner")
    scorers: list[Role] = []
    try:
        _wait(learner.ready, 120, "the learner")
        scorers = [start("scorer", config, run_dir, f"scorer-{i}") for i in range(n)]
        _wait(lambda: all(s.ready() for s in scorers), 180, f"{n} scorers")
        samples = [sample(scorers, learner, services)]
        while samples[-1].predicted < 0.9 * events and time.monotonic() - samples[0].at < 120:
            time.sleep(0.5)
            samples.append(sample(scorers, learner, services))
        first, last = samples[0], samples[-1]
        seconds = last.at - first.at
        scored = last.predicted - first.predicted
        learned = last.learned - first.learned
        cpu = {k: last.cpu[k] - first.cpu.get(k, 0.0) for k in last.cpu}
        streamlearn_cpu = sum(v for k, v in cpu.items() if k.startswith(("scorer", "learner")))
        return {
            "scorers": n,
            "window_s": round(seconds, 2),
            "scored_per_s": round(scored / seconds),
            "learned_per_s": round(learned / seconds),
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "streamlearn_cpu_us_per_event": round(1e6 * streamlearn_cpu / max(scored, 1), 1),
            "scorer_cpu_share": round(
                sum(v for k, v in cpu.items() if k.startswith("scorer")) / seconds / n, 2
            ),
        }
    finally:
        for role in [*scorers, learner]:
            role.stop()


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def backlog(bootstrap: str, events: int, producers: int) -> float:
    """Write ``events`` fraud events with ``producers`` generator processes; seconds taken."""
    started = time.monotonic()
    each = events // producers
    with contextlib.ExitStack() as stack:
        loads = [
            stack.enter_context(LoadGenerator(bootstrap, seed=100 + i)) for i in range(producers)
        ]
        for load in loads:
            load.prepare(each)
        for load in loads:
            load.start_produce(TOPIC, [(None, 0.0)], unpaced_events=each)
        for load in loads:
            load.wait()
    return time.monotonic() - started


@contextlib.contextmanager
def services() -> Iterator[tuple[str, str, dict[str, int]]]:
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_server:
        pids = {"broker": _pid(broker), "redis": _pid(redis_server)}
        yield broker.bootstrap, redis_server.url, pids


def _pid(service: Any) -> int:
    process = getattr(service, "_process", None)
    return int(process.pid) if process is not None else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--scorers", default="1,2,4,8")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    base = yaml.safe_load((ROOT / "examples/fraud/config.yaml").read_text())
    base["pipelines"][0]["checkpoint"] = {"interval_s": 5.0}
    rows = []
    with services() as (bootstrap, redis_url, pids), tempfile.TemporaryDirectory() as tmp:
        base["kafka"] = {"bootstrap": bootstrap}
        base["redis"] = {"url": redis_url}
        ensure_topics(bootstrap, [TOPIC], partitions=args.partitions)
        produced_s = backlog(bootstrap, args.events, args.producers)
        print(f"backlog: {args.events} events in {produced_s:.1f} s", flush=True)
        for n in [int(x) for x in args.scorers.split(",")]:
            row = measure(n, base, args.events, pids, Path(tmp))
            print(row, flush=True)
            rows.append(row)
    one = rows[0]["scored_per_s"] or 1
    for row in rows:
        row["speedup"] = round(row["scored_per_s"] / one, 2)
    results = {
        "machine": machine_info(),
        "events": args.events,
        "partitions": args.partitions,
        "rows": rows,
    }
    lines = [
        "# Scorer replicas on one many-core machine",
        "",
        f"{args.events:,} fraud events, {args.partitions} partitions; one learner and N scorers "
        "per row, rates over the window in which all N scorers were scoring.",
        "",
        "| scorers | scored/s | speedup | learned/s | streamlearn CPU µs/event | broker CPU s "
        "| Redis CPU s | window s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scorers']} | {r['scored_per_s']:,} | {r['speedup']}x | {r['learned_per_s']:,} "
            f"| {r['streamlearn_cpu_us_per_event']} | {r['cpu_s'].get('broker', 0)} "
            f"| {r['cpu_s'].get('redis', 0)} | {r['window_s']} |"
        )
    write_results(results, "\n".join(lines) + "\n", args.out, "roles_scaling")


if __name__ == "__main__":
    main()
