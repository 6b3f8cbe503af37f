"""Fault-test harness: the processor as a child process to kill and restart, and the evidence.

The processor runs as ``python -m streamlearn run CONFIG``, each start logging its stderr to a
file of its own. :class:`Processor` starts, SIGKILLs (a crash), restarts and SIGTERMs (a clean
stop) it; :class:`Producer` writes a labelled stream with malformed messages mixed in at a steady
rate from a thread; :func:`drain` waits until everything produced is covered; :func:`collect`
gathers what the tests assert on: predictions in Redis, the newest checkpoint, dead letters.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
import yaml
from kafka import KafkaConsumer

from connectors.embedded import free_port, redis_server_binary
from connectors.kafka import KafkaSink, committed_offsets, end_offsets, read_all
from connectors.redis_aggregates import AggregateStore
from connectors.redis_checkpoints import RedisCheckpointStore
from streamlearn.aggregates import Aggregator
from streamlearn.checkpoint import Checkpoint
from streamlearn.config import parse_config
from streamlearn.config_aggregates import AggregateSpec
from streamlearn.errors import ConfigError
from streamlearn.generators.fraud import FraudGenerator

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "fraud"
GROUP_TIMING = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
# What the engine's checkpoint contract provides: a save every second, a few versions kept, and
# a replica lock whose lease a restart after SIGKILL waits out (at most ~3 s).
CHECKPOINT = {"enabled": True, "interval_s": 1.0, "keep": 3, "lock_ttl_s": 3.0}
AGGREGATES = {"events_seen": {"fn": "count", "window": "3650d"}}
CONTRACT_KEYS = ("keep", "lock_ttl_s")
STREAMLEARN = (sys.executable, "-m", "streamlearn")

# Broken messages of each kind; ``%d`` makes every one unique.
MALFORMED: tuple[bytes, ...] = (
    b"{not json %d",
    b'{"event_id": "bad-%d", "entity_id": "card-x", "ts": 1}',
    b'{"event_id": "bad-%d", "entity_id": "card-x", "ts": 1, "amount": "12.5", '
    b'"merchant_risk": 0.1, "velocity_1h": 1, "distance_km": 1, "hour": 1, '
    b'"is_foreign": 0, "channel": "web", "mcc": "5411", "is_fraud": 0}',
    b'{"event_id": "bad-%d", "entity_id": "card-x", "ts": 1, "amount": 1.0, '
    b'"merchant_risk": 0.1, "velocity_1h": 1, "distance_km": 1, "hour": "noon", '
    b'"is_foreign": 0, "channel": "web", "mcc": "5411", "is_fraud": 0}',
    b"[%d, 2, 3]",
    b'{"event_id": "bad-%d", "entity_id": "card-x", "ts": 1, "amount": NaN}',
)


# ---------------------------------------------------------------------------------------------
# Configuration


def processor_config(broker: str, redis_url: str, topic: str, prefix: str) -> dict[str, Any]:
    """The fraud example pointed at the test services, checkpointing every second."""
    config = yaml.safe_load((ROOT / "examples/fraud/config.yaml").read_text())
    config["kafka"] = {"bootstrap": broker, "connect_timeout_s": 30, **GROUP_TIMING}
    config["redis"] = {"url": redis_url, "prefix": prefix}
    # Each run serves /metrics on this port, so the harness can tell when a run is working.
    config["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    pipeline = config["pipelines"][0]
    pipeline["source"] = {"topic": topic, "group": f"group-{topic}"}
    pipeline["checkpoint"] = dict(CHECKPOINT)
    # A per-card count of every event: after the storm it must equal the card's event count
    # (aggregate state is written behind, once per checkpoint, and must count each event once).
    pipeline["schema"]["aggregates"] = AGGREGATES
    return config


def write_config(directory: Path, config: dict[str, Any]) -> tuple[Path, list[str]]:
    """Write ``config``; return its path and the contract keys today's engine made us drop.

    An engine that does not know ``checkpoint.keep``/``lock_ttl_s`` yet refuses them; the test
    then runs without them (and reports so) rather than not at all.
    """
    dropped: list[str] = []
    try:
        parse_config(config, env={})
    except ConfigError as error:
        if not any(key in str(error) for key in CONTRACT_KEYS):
            raise
        for pipeline in config["pipelines"]:
            for key in CONTRACT_KEYS:
                if pipeline["checkpoint"].pop(key, None) is not None:
                    dropped.append(f"checkpoint.{key}")
        parse_config(config, env={})
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, dropped


def child_env() -> dict[str, str]:
    """The environment of a child: this checkout importable, no service overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_")}
    env["STREAMLEARN_CHECKPOINT_KEY"] = "crash-test-secret"  # signed, as in production
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _die_with_parent() -> None:
    # Linux: the kernel SIGKILLs the child when the thread that started it ends (start children
    # from the test's main thread), so a crashed test run leaves no processor behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# The processor


class Processor:
    """``python -m streamlearn run CONFIG`` as a child process that can crash and come back."""

    def __init__(self, config_path: Path, log_dir: Path, args: tuple[str, ...] = ()) -> None:
        self.config_path = config_path
        self.args = args  # e.g. ("--role", "scorer")
        self.log_dir = log_dir
        self.logs: list[Path] = []
        self.kills = 0
        self.own_exits: list[int] = []  # exit codes of runs that ended without being told to
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self.metrics_port = int(yaml.safe_load(config_path.read_text())["metrics"]["port"])

    @property
    def starts(self) -> int:
        return len(self.logs)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started_at

    def metrics(self) -> dict[str, float]:
        """This run's ``/metrics`` samples by series ({} while it does not answer)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return {}
        lines = (line.rpartition(" ") for line in text.splitlines() if line[:1] != "#")
        return {series: float(value) for series, _, value in lines if series}

    def predictions(self) -> int:
        """Predictions this run has written so far."""
        found = self.metrics()
        return int(
            sum(v for k, v in found.items() if k.startswith("streamlearn_predictions_total"))
        )

    def caught_up(self, partitions: int) -> bool:
        """Whether this run reports consumer lag 0 on ``partitions`` partitions."""
        lags = [v for k, v in self.metrics().items() if k.startswith("streamlearn_consumer_lag{")]
        return len(lags) == partitions and not any(lags)

    def ready(self) -> bool:
        """Whether this run's ``/readyz`` answers 200 (started, assigned, outputs working)."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def start(self) -> None:
        """Start a fresh run (noting how the last one ended, if it ended on its own)."""
        self._reap_own_exit()
        log = self.log_dir / f"run-{len(self.logs) + 1:02d}.log"
        self.logs.append(log)
        with log.open("wb") as stderr:
            self._process = subprocess.Popen(
                [*STREAMLEARN, "run", str(self.config_path), *self.args],
                cwd=ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self._started_at = time.monotonic()

    def kill(self) -> None:
        """Crash it: SIGKILL, no chance to finish the batch or save anything."""
        self._reap_own_exit()
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
            self.kills += 1

    def terminate(self, timeout_s: float = 60.0) -> int | None:
        """Stop it cleanly with SIGTERM; return its exit code (None if it had to be killed)."""
        self._reap_own_exit()
        if self._process is None:
            return None
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            return None
        finally:
            self._process = None

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def _reap_own_exit(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self.own_exits.append(self._process.returncode)
            self._process = None

    def tails(self, lines: int = 40, earlier: int = 4) -> str:
        """The last ``lines`` of the newest run's log and ``earlier`` of each run before it."""
        parts = []
        for i, log in enumerate(self.logs):
            keep = lines if i == len(self.logs) - 1 else earlier
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            parts.append(f"--- {log.name} (last {keep} of {len(text)} lines)")
            parts.extend(text[-keep:])
        return "\n".join(parts)

    @contextlib.contextmanager
    def explained(self) -> Iterator[None]:
        """On any failure inside, print the runs' log tails (pytest shows them), then re-raise."""
        try:
            yield
        except BaseException:
            print(self.tails())
            raise
        finally:
            self.close()


@dataclass(frozen=True)
class Kill:
    """When to SIGKILL a run: ``after_s`` after its start, or after it began writing predictions."""

    after_s: float
    working: bool


def kill_schedule(seed: int, kills: int = 10, early: int = 4) -> list[Kill]:
    """``early`` kills 0.4 to 1.6 s after a start (before any checkpoint can exist), the rest
    0.2 to 2.5 s after the run began writing predictions (mid-batch, between checkpoints)."""
    rng = random.Random(seed)
    schedule = [Kill(round(rng.uniform(0.2, 2.5), 2), working=True) for _ in range(kills)]
    for i in rng.sample(range(kills), early):
        schedule[i] = Kill(round(rng.uniform(0.4, 1.6), 2), working=False)
    return schedule


@dataclass
class StormLog:
    """What each kill hit: the run's predictions so far (0: none yet, or not answering)."""

    predictions_at_kill: list[int] = field(default_factory=list)
    runs_that_never_worked: int = 0


def storm(
    processor: Processor, schedule: list[Kill], partitions: int, work_timeout_s: float = 30.0
) -> StormLog:
    """Start, and SIGKILL as ``schedule`` says, restarting each time; leave a fresh run going.

    A working kill waits for the run to write predictions, or to be ready with nothing left to
    read on any of the topic's ``partitions`` (a checkpoint already covers all produced).
    """
    log = StormLog()
    for kill in schedule:
        if len(processor.own_exits) >= 3:
            break  # it keeps ending by itself: a broken engine, not a storm; report it
        if not processor.running:
            processor.start()
        if kill.working:
            deadline = time.monotonic() + work_timeout_s
            while processor.running and not _working(processor, partitions):
                if time.monotonic() > deadline:
                    log.runs_that_never_worked += 1
                    break
                time.sleep(0.05)
            time.sleep(kill.after_s)
        else:
            while processor.running and processor.uptime < kill.after_s:
                time.sleep(0.02)
        log.predictions_at_kill.append(processor.predictions())
        processor.kill()
    processor.start()
    return log


def _working(processor: Processor, partitions: int) -> bool:
    if processor.predictions():
        return True
    return processor.ready() and processor.caught_up(partitions)


# ---------------------------------------------------------------------------------------------
# The stream


@dataclass
class Stream:
    """The messages of one test run, in send order: ``(key, value)``, malformed ones mixed in."""

    events: list[dict[str, Any]]
    messages: list[tuple[bytes, bytes]]
    malformed_keys: set[bytes]


def build_stream(events: int, malformed: int, seed: int) -> Stream:
    """``events`` labelled fraud events with ``malformed`` broken messages spread between them."""
    valid = list(FraudGenerator(seed=seed).events(events))
    rng = random.Random(seed)
    bad_at = sorted(rng.sample(range(events), malformed))
    messages = [(e["entity_id"].encode(), orjson.dumps(e)) for e in valid]
    keys = set()
    for n, at in reversed(list(enumerate(bad_at))):
        key = b"bad-%d" % n
        keys.add(key)
        messages.insert(at, (key, MALFORMED[n % len(MALFORMED)].replace(b"%d", b"%d" % n)))
    return Stream(valid, messages, keys)


@dataclass(frozen=True)
class Record:
    """One message to produce: where, its key and value, and its timestamp (None: now)."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


class RecordProducer(threading.Thread):
    """Writes records, each to its own topic, at a steady rate spread over ``duration_s``."""

    def __init__(self, broker: str, records: list[Record], duration_s: float) -> None:
        super().__init__(name="producer", daemon=True)
        self.broker, self.records, self.duration_s = broker, records, duration_s
        self.error: BaseException | None = None
        self.finished_after_s: float | None = None

    def run(self) -> None:
        try:
            records = self.records
            started = time.monotonic()
            with KafkaSink(self.broker, client_id="crash-test-producer") as sink:
                for i in range(0, len(records), 100):
                    wait = started + self.duration_s * i / len(records) - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    for r in records[i : i + 100]:
                        sink.send(r.topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms)
                sink.flush()
            self.finished_after_s = time.monotonic() - started
        except BaseException as error:
            self.error = error

    def finish(self, timeout_s: float = 60.0) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error


class Producer(RecordProducer):
    """Writes a stream to a topic at a steady rate, spread over ``duration_s``."""

    def __init__(self, broker: str, topic: str, stream: Stream, duration_s: float) -> None:
        records = [Record(topic, key, value) for key, value in stream.messages]
        super().__init__(broker, records, duration_s)
        self.topic, self.stream = topic, stream


# ---------------------------------------------------------------------------------------------
# Waiting for the end, and the evidence


def newest_checkpoint(config_path: Path) -> dict[str, Any]:
    """The newest checkpoint as ``streamlearn model list --json`` shows it ({} if none)."""
    result = subprocess.run(
        [*STREAMLEARN, "model", "list", PIPELINE, "--json", "--config", str(config_path)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"model list failed:\n{result.stderr[-3000:]}"
    listed = orjson.loads(result.stdout)
    return listed[0] if listed else {}


def forget_bound(redis_url: str, prefix: str, pipeline: str = PIPELINE) -> int:
    """What the newest checkpoint read past of both topics: the lesser of its events and labels
    watermarks. The label store forgets only entries whose deadline lies before this (or before
    an older checkpoint's); 0 if there is no checkpoint."""
    store = RedisCheckpointStore(redis.Redis.from_url(redis_url), prefix, pipeline)
    versions = store.versions()
    if not versions:
        return 0
    state = pickle.loads(Checkpoint.from_fields(store.load(versions[0])).state)["pipeline"]
    return min(int(state["watermark_ms"]), int(state["labels_watermark"]["value"]))


def checkpoint_offsets(checkpoint: dict[str, Any]) -> dict[tuple[str, int], int]:
    """The offsets a checkpoint (as :func:`newest_checkpoint` returns it) learned up to."""
    return {(o["topic"], o["partition"]): o["offset"] for o in checkpoint.get("offsets", [])}


@dataclass
class Drain:
    """How the wait for the end went: seconds taken (None: it never got there) and, if it did
    not, how many messages the group's commits and the newest checkpoint left short of it."""

    seconds: float | None
    uncommitted: int = 0
    unsaved: int = 0


def drain(
    processor: Processor,
    broker: str,
    topic: str,
    group: str,
    timeout_s: float = 30.0,
    also: tuple[str, ...] = (),
) -> Drain:
    """Wait until the running processor is ready and has covered every partition's end.

    Covered: the group's commits reach the ends, and either the newest checkpoint's offsets do
    too or this run reads at the end of every partition (consumer lag 0): where commits may
    run ahead of checkpoints, a restarted run may still have events to learn again.
    ``also`` names more topics the processor reads (e.g. a labels topic), covered the same way.
    """
    ends = {(t, p): end for t in (topic, *also) for p, end in end_offsets(broker, t).items()}
    # The lag metric is per partition number, summed over topics.
    numbers = len({p for _, p in ends})
    started = time.monotonic()
    deadline = started + timeout_s
    while not processor.ready() and processor.running and time.monotonic() < deadline:
        time.sleep(0.2)
    while processor.running and time.monotonic() < deadline:
        if covers(committed_offsets(broker, group), ends) and (
            processor.caught_up(numbers)
            or covers(checkpoint_offsets(newest_checkpoint(processor.config_path)), ends)
        ):
            return Drain(time.monotonic() - started)
        time.sleep(0.5)
    committed = committed_offsets(broker, group)
    saved = checkpoint_offsets(newest_checkpoint(processor.config_path))
    return Drain(
        None,
        uncommitted=sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items()),
        unsaved=sum(max(0, end - saved.get(tp, 0)) for tp, end in ends.items()),
    )


def covers(offsets: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]) -> bool:
    """Whether ``offsets`` reach every ``(topic, partition)``'s end."""
    return all(offsets.get(tp, 0) >= end for tp, end in ends.items())


@dataclass
class Outcome:
    """What a fault run left behind: the figures the tests assert on and print."""

    valid_events: int
    entities: int
    unpredicted: list[str]
    checkpoint: dict[str, Any]
    malformed: int
    dead_letters: int
    dead_letter_duplicates: int
    missing_dead_letters: list[str]
    miscounted: list[str] = field(default_factory=list)  # entities whose aggregate is off
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def learned(self) -> int | None:
        learned = self.checkpoint.get("learned")
        return None if learned is None else int(learned)

    def report(self, title: str) -> str:
        line = {
            "learned": self.learned,
            "expected_learned": self.valid_events,
            "checkpoint_version": self.checkpoint.get("version"),
            "entities": self.entities,
            "unpredicted_entities": len(self.unpredicted),
            "malformed": self.malformed,
            "dead_letters": self.dead_letters,
            "dead_letter_duplicates": self.dead_letter_duplicates,
            "missing_dead_letters": len(self.missing_dead_letters),
            "miscounted_aggregates": len(self.miscounted),
            **self.figures,
        }
        text = f"{title}: " + ", ".join(f"{k}={v}" for k, v in line.items())
        print(text)
        return text


def collect(
    broker: str, redis_url: str, prefix: str, topic: str, stream: Stream, config_path: Path
) -> Outcome:
    """Gather predictions, the newest checkpoint and the dead letters after a run."""
    source = read_all(broker, topic, timeout_s=30)
    bad_sources = {
        f"{topic}/{r.partition}/{r.offset}" for r in source if r.key in stream.malformed_keys
    }
    assert len(bad_sources) == len(stream.malformed_keys), "the topic lacks malformed messages"
    assert len(source) == len(stream.messages), "the topic does not hold the whole stream"
    letters = Counter(
        dict(r.headers)["source"].decode() for r in read_all(broker, f"{topic}.dlq", timeout_s=30)
    )
    entities = sorted({e["entity_id"] for e in stream.events})
    client = redis.Redis.from_url(redis_url)
    with client.pipeline(transaction=False) as pipe:
        for entity in entities:
            pipe.exists(f"{prefix}:{PIPELINE}:pred:{entity}")
        found = pipe.execute()
    counts = Counter(e["entity_id"] for e in stream.events)
    counted = aggregate_counts(client, prefix, entities, max(e["ts"] for e in stream.events) + 1)
    return Outcome(
        valid_events=len(stream.events),
        entities=len(entities),
        unpredicted=[e for e, ok in zip(entities, found) if not ok],
        miscounted=[e for e in entities if counted[e] != counts[e]],
        checkpoint=newest_checkpoint(config_path),
        malformed=len(bad_sources),
        dead_letters=sum(letters.values()),
        dead_letter_duplicates=sum(letters.values()) - len(letters),
        missing_dead_letters=sorted(bad_sources - set(letters)),
    )


def aggregate_counts(
    client: redis.Redis, prefix: str, entities: list[str], probe_ms: int
) -> dict[str, float]:
    """Each entity's stored ``events_seen``: how many of its events its state counts."""
    aggregator = Aggregator(
        {n: AggregateSpec.model_validate(s) for n, s in AGGREGATES.items()}, allowed_lateness_s=0
    )
    store = AggregateStore(client, prefix, PIPELINE, ttl_s=aggregator.state_ttl_s)
    states = store.load(entities)
    # A probe event after the last one, from a partition no event came from: its feature is the
    # count of everything before it.
    probe = aggregator.apply(
        states, entities, np.full(len(entities), probe_ms), {}, {}, [999] * len(entities),
        list(range(len(entities))),
    )  # fmt: skip
    return dict(zip(entities, probe.features["events_seen"].tolist()))


@dataclass(frozen=True)
class PendingEntry:
    """One ``{prefix}:{pipeline}:pending:{event_id}`` hash: its state (``w`` an event waiting
    for its label, ``l`` a label waiting for its event, ``j`` joined), its fields, its PTTL."""

    state: str
    fields: dict[str, bytes]
    ttl_ms: int  # -1: no TTL


def pending_entries(
    redis_url: str, prefix: str, pipeline: str = PIPELINE
) -> tuple[dict[str, PendingEntry], int]:
    """The pipeline's pending entries by event id, and how many early labels are indexed."""
    client = redis.Redis.from_url(redis_url)
    base = f"{prefix}:{pipeline}:pending:"
    early = f"{prefix}:{pipeline}:pending-early"
    keys = list(client.scan_iter(match=f"{base}*", count=1000))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
            pipe.pttl(key)
        found = pipe.execute()
    entries = {}
    for key, fields, ttl in zip(keys, found[::2], found[1::2]):
        if fields:  # gone between the scan and the read: expired
            state = fields.get(b"st", b"").decode()
            entries[key.decode()[len(base) :]] = PendingEntry(
                state, {k.decode(): v for k, v in fields.items()}, int(ttl)
            )
    return entries, int(client.zcard(early))


@dataclass(frozen=True)
class DeadLetter:
    """A message of a dead-letter topic: why, where it was read, its bytes."""

    reason: str
    source: str  # topic/partition/offset
    value: bytes


def dead_letters(broker: str, topic: str) -> list[DeadLetter]:
    """Every message of the dead-letter topic ``topic``, in partition and offset order."""
    out = []
    for record in read_all(broker, topic, timeout_s=30):
        headers = dict(record.headers)
        out.append(
            DeadLetter(headers["reason"].decode(), headers["source"].decode(), record.value or b"")
        )
    return out


# ---------------------------------------------------------------------------------------------
# Other actors: a Redis to freeze, a consumer that steals partitions


class RedisServer:
    """A redis-server of the test's own, to freeze (SIGSTOP) and thaw (SIGCONT)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def group_member(
    broker: str, topic: str, group: str, join_timeout_s: float = 15.0
) -> Iterator[set[int]]:
    """A plain consumer in ``group`` for the body's duration: it joins, takes what the group
    gives it, keeps polling (a live member) without committing, and leaves on exit.

    Yields the partitions it holds (empty when the join timed out).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=broker,
        group_id=group,
        client_id="intruder",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=50,
        **GROUP_TIMING,
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + join_timeout_s
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        stop = threading.Event()

        def keep_polling() -> None:
            while not stop.is_set():
                consumer.poll(timeout_ms=100)

        poller = threading.Thread(target=keep_polling, name="intruder", daemon=True)
        poller.start()
        try:
            yield {tp.partition for tp in consumer.assignment()}
        finally:
            stop.set()
            poller.join()
    finally:
        consumer.close(autocommit=False)
