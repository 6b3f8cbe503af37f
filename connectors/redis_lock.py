"""One process per pipeline: a lease in Redis with a fencing token, renewed while it runs.

Until roles (one learner, many scorers) exist, two replicas of one pipeline would overwrite each
other's checkpoints. The lock refuses the second one. A process that died leaves its lease to
expire within ``ttl_s``, so a restart after a crash waits that long at most. The value held
(``{token}:{host}:{pid}``) is the fencing token the checkpoint store checks before every write,
so a process that lost its lease (paused, partitioned) can never overwrite its successor.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from streamlearn.errors import PipelineFenced, StreamlearnError

log = logging.getLogger(__name__)

# Extend the lease only while we still hold it; take it back if it expired (e.g. Redis restarted
# empty) and nobody else took it. Returns 1 when held, 0 when another process holds it.
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class PipelineTaken(StreamlearnError):
    """The pipeline already runs in another live process."""


class ReplicaLock:
    """The lease ``{prefix}:{pipeline}:lock``, renewed every ``ttl_s / 3`` on its own thread.

    Examples
    --------
    >>> from connectors.embedded import EmbeddedRedis
    >>> with EmbeddedRedis() as server:
    ...     client = redis.Redis.from_url(server.url)
    ...     first = ReplicaLock(client, "sl", "fraud", ttl_s=2).acquire(wait_s=0)
    ...     try:
    ...         ReplicaLock(client, "sl", "fraud", ttl_s=2).acquire(wait_s=0)
    ...     except PipelineTaken as exc:
    ...         refused = "already runs" in str(exc)
    ...     first.release()
    ...     second = ReplicaLock(client, "sl", "fraud", ttl_s=2).acquire(wait_s=0)
    ...     second.release()
    >>> refused, first.token < second.token
    (True, True)
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        pipeline: str,
        ttl_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.pipeline = pipeline
        self.key = f"{prefix}:{pipeline}:lock"
        self.fence_key = f"{self.key}:fence"
        self.ttl_ms = int(ttl_s * 1000)
        self.sleep = sleep
        self.token = 0
        self.value = ""
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self, wait_s: float | None = None) -> ReplicaLock:
        """Take the lease, waiting up to ``wait_s`` (default: one lease) for a dead holder's."""
        wait_s = self.ttl_ms / 1000 + 1 if wait_s is None else wait_s
        self.token = int(self.client.incr(self.fence_key))
        self.value = f"{self.token}:{socket.gethostname()}:{os.getpid()}"
        give_up = time.monotonic() + wait_s
        waited = False
        while not self.client.set(self.key, self.value, nx=True, px=self.ttl_ms):
            holder = self.client.get(self.key)
            if time.monotonic() >= give_up:
                raise PipelineTaken(self._taken_message(holder))
            if not waited:
                log.info(
                    "%s: waiting up to %.0f s for the lock held by %s (a crashed run's "
                    "lease expires by itself)",
                    self.pipeline,
                    wait_s,
                    _text(holder),
                )
                waited = True
            self.sleep(0.2)
        self._thread = threading.Thread(
            target=self._keep, name=f"lock-{self.pipeline}", daemon=True
        )
        self._thread.start()
        return self

    def check(self) -> None:
        """Raise :class:`PipelineFenced` if the lease was taken over by another process."""
        if self.lost.is_set():
            raise PipelineFenced(
                f"{self.pipeline}: another process took over this pipeline's lock ({self.key}); "
                "stopping without committing"
            )

    def release(self) -> None:
        """Stop renewing and give the lease up (only if still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self._release(keys=[self.key], args=[self.value])
        except redis.RedisError as exc:
            log.warning(
                "%s: could not release the lock (it expires by itself): %s", self.pipeline, exc
            )

    def _keep(self) -> None:
        interval = self.ttl_ms / 3000
        while not self._stop.wait(interval):
            try:
                held = self._renew(keys=[self.key], args=[self.value, self.ttl_ms])
            except redis.RedisError as exc:
                log.debug("%s: renewing the lock failed: %s", self.pipeline, exc)
                continue  # Redis is down: fencing on the next write protects the checkpoints
            if not held:
                log.error("%s: the pipeline lock was taken by another process", self.pipeline)
                self.lost.set()
                return

    def _taken_message(self, holder: Any) -> str:
        return (
            f"pipeline {self.pipeline!r} already runs in another process ({_text(holder)} holds "
            f"{self.key}). A second replica of one pipeline is refused: it would overwrite the "
            "first one's model checkpoints (scale-out with roles is not built yet). If that "
            f"process died, its lock expires within {self.ttl_ms / 1000:g} s; start again then."
        )


def _text(value: Any) -> str:
    if value is None:
        return "nobody"
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
