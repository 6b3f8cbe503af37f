"""Gets a scored batch's outputs written, waiting out outages without taking in more input.

A transient failure (a sink that is down or slow) pauses the source and retries with backoff
until the write lands; memory stays bounded because nothing more is consumed meanwhile. A
permanent refusal ends the pipeline with its message. When a stop is requested during an
outage, retries go on for a grace period, then give up without committing: the batch is read
again on the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from streamlearn.errors import OutputBackpressure, ServiceUnavailable, ShutdownTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures worth waiting out. Anything else (OutputRejected, a bug) propagates at once.
# (OSError covers ConnectionError and TimeoutError.)
TRANSIENT = (OutputBackpressure, ServiceUnavailable, OSError)


class Delivery:
    """Retries one write with backoff while the source is paused.

    Parameters
    ----------
    pause, resume
        Stop and restart fetching from the source.
    on_ready
        Told ``False`` when outputs start failing and ``True`` when they recover.
    backoff_s
        First and longest pause between attempts.
    shutdown_grace_s
        How long to keep trying once a stop was requested.
    sleep, wait
        How to pass the time between attempts: ``sleep`` by default (the runner polls the paused
        source there, to stay in its consumer group), ``wait`` when :meth:`deliver` is told not
        to poll.

    Examples
    --------
    >>> attempts = []
    >>> def flaky():
    ...     attempts.append(1)
    ...     if len(attempts) < 3:
    ...         raise OutputBackpressure("redis down")
    >>> events = []
    >>> d = Delivery(lambda: events.append("pause"), lambda: events.append("resume"),
    ...              backoff_s=(0.001, 0.002), sleep=lambda s: None)
    >>> d.deliver(flaky, threading.Event(), "fraud")
    >>> len(attempts), events
    (3, ['pause', 'resume'])
    """

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        on_ready: Callable[[bool], None] = lambda ready: None,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        shutdown_grace_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pause = pause
        self.resume = resume
        self.on_ready = on_ready
        self.backoff_s = backoff_s
        self.shutdown_grace_s = shutdown_grace_s
        self.sleep = sleep
        self.wait = wait
        self.clock = clock

    def call(self, work: Callable[[], T], stop: threading.Event, name: str) -> T:
        """Like :meth:`deliver`, for a call that returns something (e.g. scoring that reads)."""
        result: list[T] = []
        self.deliver(lambda: result.append(work()), stop, name)
        return result[0]

    def deliver(
        self, write: Callable[[], None], stop: threading.Event, name: str, *, poll: bool = True
    ) -> None:
        """Call ``write`` until it succeeds; raise if it is refused for good or time runs out.

        ``poll=False``: wait between attempts without polling the source. For a batch the model
        learned before its outputs landed: a poll may run a rebalance, whose checkpoint would
        hold a model that learned the batch while the ledger does not count it yet.
        """
        delay, ceiling = self.backoff_s
        pause = self.sleep if poll else self.wait
        paused, give_up_at = False, None
        while True:
            try:
                write()
                break
            except TRANSIENT as exc:
                if not paused:
                    self.pause()
                    self.on_ready(False)
                    paused = True
                if stop.is_set():
                    give_up_at = give_up_at or self.clock() + self.shutdown_grace_s
                    if self.clock() >= give_up_at:
                        raise ShutdownTimeout(
                            f"{name}: outputs still failing at shutdown ({exc}); the last batch "
                            "was not committed and will be read again on the next start"
                        ) from exc
                log.warning("%s: writing outputs failed (%s); retrying in %.1fs", name, exc, delay)
                pause(delay)
                delay = min(ceiling, delay * 2)
        if paused:
            self.resume()
            self.on_ready(True)
            log.info("%s: outputs recovered; consuming again", name)
