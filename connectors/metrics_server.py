"""Serves ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP on a daemon thread."""

from __future__ import annotations

import errno
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder

from connectors.prometheus import PrometheusHooks
from streamlearn.errors import ServiceUnavailable


class HealthProbe(Protocol):
    """What ``/healthz`` and ``/readyz`` ask (``streamlearn.health.HealthMonitor`` answers)."""

    def why_not_live(self) -> Sequence[str]:
        """One line per reason the process is not live; empty when it is."""
        ...

    def why_not_ready(self) -> Sequence[str]:
        """One line per reason the process is not ready; empty when it is."""
        ...


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` for one process on a daemon thread.

    ``/healthz`` and ``/readyz`` ask ``health`` at each request and answer 200, or 503 with one
    line per reason. Without ``health``, ``/healthz`` always answers 200 and ``/readyz``
    follows the hooks' ``ready`` flag.

    Examples
    --------
    >>> from urllib.request import urlopen
    >>> from urllib.error import HTTPError
    >>> from streamlearn.health import HealthMonitor
    >>> hooks, health = PrometheusHooks(), HealthMonitor(["fraud"])
    >>> hooks.on_consumed("fraud", 3)
    >>> with MetricsServer(hooks, "127.0.0.1", 0, health) as server:
    ...     page = urlopen(f"http://127.0.0.1:{server.port}/metrics").read().decode()
    ...     try:
    ...         urlopen(f"http://127.0.0.1:{server.port}/readyz")
    ...     except HTTPError as exc:
    ...         not_ready = exc.code, exc.read().decode().strip()
    >>> 'streamlearn_events_consumed_total{pipeline="fraud"} 3.0' in page
    True
    >>> not_ready
    (503, 'fraud: not consuming yet (waiting for the consumer group to assign partitions)')
    """

    def __init__(
        self, hooks: PrometheusHooks, host: str, port: int, health: HealthProbe | None = None
    ) -> None:
        self.hooks = hooks
        self.health: HealthProbe = _ReadyFlag(hooks) if health is None else health
        self.host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port being served (the one the system chose when 0 was asked for)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        """Bind and start serving; raise :class:`ServiceUnavailable` if the port is taken."""
        if self._server is not None:
            return self
        try:
            handler = _handler(self.hooks, self.health)
            server = ThreadingHTTPServer((self.host, self._requested_port), handler)
        except OSError as exc:
            raise ServiceUnavailable(_bind_failure(self.host, self._requested_port, exc)) from None
        server.daemon_threads = True
        self._server = server
        # A short poll interval only makes stop() quick; serving does not depend on it.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="streamlearn-metrics",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        what = f"port {port} on {host} is already in use by another process"
    else:
        what = f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    return (
        f"metrics server: {what}. Choose another port with `metrics.port` in the "
        "configuration or the STREAMLEARN_METRICS_PORT environment variable."
    )


class _ReadyFlag:
    """Health from the hooks' process-wide ``ready`` flag alone (no monitor given)."""

    def __init__(self, hooks: PrometheusHooks) -> None:
        self.hooks = hooks

    def why_not_live(self) -> Sequence[str]:
        return []

    def why_not_ready(self) -> Sequence[str]:
        return [] if self.hooks.ready else ["not ready"]


def _handler(hooks: PrometheusHooks, health: HealthProbe) -> type[BaseHTTPRequestHandler]:
    class MetricsRequestHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, content_type, encode(hooks.registry))
            elif path == "/healthz":
                self._verdict(health.why_not_live(), "ok")
            elif path == "/readyz":
                self._verdict(health.why_not_ready(), "ready")
            else:
                body = b"not found; try /metrics, /healthz or /readyz\n"
                self._reply(404, "text/plain; charset=utf-8", body)

        def _verdict(self, problems: Sequence[str], fine: str) -> None:
            lines = list(problems) or [fine]
            body = "".join(f"{line}\n" for line in lines).encode()
            self._reply(503 if problems else 200, "text/plain; charset=utf-8", body)

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Prometheus scrapes every few seconds; one stderr line per scrape is noise.
            pass

    return MetricsRequestHandler
