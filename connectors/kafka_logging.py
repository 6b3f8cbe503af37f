"""Keeps kafka-python's own logging from burying streamlearn's messages.

kafka-python logs every refused connection (about 190 lines while a broker is down for a
minute); streamlearn reports an unreachable broker itself, once, saying what to check.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ConnectionNoise", "quiet_kafka", "tame_kafka_logging"]

KAFKA_LOGGER = "kafka"
# What kafka-python says, per attempt, while a broker is unreachable.
_NOISE = re.compile(
    r"ECONNREFUSED|Connection refused|KafkaConnectionError|Unable to bootstrap|"
    r"Bootstrap failed|DNS lookup failed|Connection (?:failed|lost)"
)

_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved = logging.NOTSET


@contextmanager
def quiet_kafka() -> Iterator[None]:
    """Silence kafka-python's loggers inside the block (e.g. while probing a broker).

    >>> with quiet_kafka():
    ...     logging.getLogger("kafka.net").isEnabledFor(logging.CRITICAL)
    False
    """
    global _quiet_depth, _quiet_saved
    logger = logging.getLogger(KAFKA_LOGGER)
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = logger.level
            logger.setLevel(logging.CRITICAL + 1)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.setLevel(_quiet_saved)


class ConnectionNoise(logging.Filter):
    """Lets through at most one kafka-python connection-failure record per ``interval_s``.

    A handler filter: logger filters would not see records of ``kafka``'s child loggers.

    >>> now = [0.0]
    >>> noise = ConnectionNoise(60.0, clock=lambda: now[0])
    >>> def record(msg):
    ...     return logging.LogRecord("kafka.net.manager", logging.ERROR, "", 0, msg, None, None)
    >>> [noise.filter(record("Connection failed: KafkaConnectionError: 111 ECONNREFUSED"))
    ...  for _ in range(3)]
    [True, False, False]
    >>> noise.filter(record("Unknown topic or partition"))  # not noise: always shown
    True
    >>> now[0] = 61.0
    >>> noise.filter(record("Connection lost: KafkaConnectionError: 111 ECONNREFUSED"))
    True
    """

    def __init__(
        self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is shown."""
        if not record.name.startswith(KAFKA_LOGGER) or not _NOISE.search(record.getMessage()):
            return True
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return True


def tame_kafka_logging(handlers: list[logging.Handler] | None = None) -> None:
    """Show kafka-python's errors only, and its connection failures once a minute.

    ``handlers`` defaults to the root logger's (as ``logging.basicConfig`` set them up).
    """
    logging.getLogger(KAFKA_LOGGER).setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(f, ConnectionNoise) for f in handler.filters):
            handler.addFilter(ConnectionNoise())
