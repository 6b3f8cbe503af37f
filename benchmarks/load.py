"""The load generator: a child process that writes fraud events to Kafka on a rate schedule.

It runs in its own process so producing never competes with the processor for the GIL; the
payloads are serialised before the clock starts, so pacing costs only the producer's sends.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

# One phase of a schedule: (events per second, seconds); a rate of None means as fast as possible.
Phase = tuple[float | None, float]
# How often the paced loop checks the clock: small steps keep arrivals smooth at any rate.
_STEP_S = 0.002


@dataclass(frozen=True, slots=True)
class Produced:
    """What one request to the generator sent."""

    events: int
    seconds: float

    @property
    def rate(self) -> float:
        """Events per second actually achieved."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


def phases_events(phases: Sequence[Phase], unpaced_events: int = 0) -> int:
    """Count the events a schedule sends (an unpaced phase sends ``unpaced_events``).

    >>> phases_events([(2000, 4), (20000, 2), (2000, 4)])
    56000
    """
    return sum(unpaced_events if rate is None else int(rate * seconds) for rate, seconds in phases)


class LoadGenerator:
    """A long-lived generator process, commanded over a pipe; use it as a context manager.

    Examples
    --------
    ``with LoadGenerator(bootstrap, seed=7) as load: load.produce("t", [(1000, 5)])`` sends
    5 000 events at 1 000 events/s to topic ``t`` and returns a :class:`Produced`.
    """

    def __init__(self, bootstrap: str, seed: int = 7) -> None:
        context = mp.get_context("spawn")  # never fork a process that holds Kafka threads
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, bootstrap, seed), name="load-generator", daemon=True
        )

    def __enter__(self) -> LoadGenerator:
        self._process.start()
        self._expect("ready")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.is_alive():
            self._conn.send(("quit",))
            self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()

    def prepare(self, events: int, drift_at: int | None = None) -> None:
        """Serialise ``events`` events of the stream (with ``drift_at``) ahead of time."""
        self._conn.send(("prepare", events, drift_at))
        self._expect("prepared")

    def produce(self, topic: str, phases: Sequence[Phase], unpaced_events: int = 0) -> Produced:
        """Send the prepared events to ``topic`` on the schedule; wait for every acknowledgement."""
        self.start_produce(topic, phases, unpaced_events)
        return self.wait()

    def start_produce(self, topic: str, phases: Sequence[Phase], unpaced_events: int = 0) -> None:
        """Like :meth:`produce` but returns at once; collect the result with :meth:`wait`."""
        self._conn.send(("produce", topic, list(phases), unpaced_events))

    def wait(self) -> Produced:
        """Wait for the request begun by :meth:`start_produce`."""
        reply = self._expect("produced")
        return Produced(events=reply[1], seconds=reply[2])

    def _expect(self, kind: str) -> tuple[Any, ...]:
        if not self._conn.poll(600):
            raise TimeoutError(f"the load generator sent no {kind!r} within 10 minutes")
        reply: tuple[Any, ...] = self._conn.recv()
        if reply[0] == "error":
            raise RuntimeError(f"the load generator failed: {reply[1]}")
        if reply[0] != kind:
            raise RuntimeError(f"the load generator answered {reply[0]!r}, expected {kind!r}")
        return reply


def _serve(conn: Connection, bootstrap: str, seed: int) -> None:
    from connectors.kafka import KafkaSink, wait_for_broker

    wait_for_broker(bootstrap, timeout_s=60)
    sink = KafkaSink(bootstrap, client_id="benchmark-load")
    payloads: list[tuple[bytes, bytes]] = []
    conn.send(("ready",))
    try:
        while True:
            command = conn.recv()
            try:
                if command[0] == "quit":
                    return
                if command[0] == "prepare":
                    payloads = _serialise(seed, command[1], command[2])
                    conn.send(("prepared",))
                elif command[0] == "produce":
                    conn.send(("produced", *_send(sink, payloads, *command[1:])))
            except Exception as error:  # the harness reports it; the process stays usable
                conn.send(("error", repr(error)))
    finally:
        sink.close()


def _serialise(seed: int, events: int, drift_at: int | None) -> list[tuple[bytes, bytes]]:
    import orjson

    from streamlearn.generators.fraud import FraudGenerator

    generator = FraudGenerator(seed=seed, drift_at=drift_at)
    return [(orjson.dumps(e), str(e["entity_id"]).encode()) for e in generator.events(events)]


def _send(
    sink: Any,
    payloads: list[tuple[bytes, bytes]],
    topic: str,
    phases: list[Phase],
    unpaced_events: int,
) -> tuple[int, float]:
    from connectors.kafka import ensure_topics

    ensure_topics(sink.bootstrap, [topic], partitions=1)
    started = time.monotonic()
    sent = 0
    for rate, seconds in phases:
        count = unpaced_events if rate is None else int(rate * seconds)
        sent = _send_phase(sink, payloads, topic, sent, count, rate)
    sink.flush(timeout_s=120)
    return sent, time.monotonic() - started


def _send_phase(
    sink: Any,
    payloads: list[tuple[bytes, bytes]],
    topic: str,
    sent: int,
    count: int,
    rate: float | None,
) -> int:
    if sent + count > len(payloads):
        raise ValueError(f"only {len(payloads)} events prepared, the schedule needs more")
    begun, end = time.monotonic(), sent + count
    while sent < end:
        # Send what is due by now (the record timestamp is the send time), then sleep a step.
        due = (
            end
            if rate is None
            else min(end, end - count + int((time.monotonic() - begun) * rate) + 1)
        )
        for value, key in payloads[sent:due]:
            sink.send(topic, value, key=key)
        sent = due
        if sent < end:
            time.sleep(_STEP_S)
    return sent
