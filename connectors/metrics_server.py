"""Serves ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP on a daemon thread."""

from __future__ import annotations

import errno
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder

from connectors.prometheus import PrometheusHooks
from streamlearn.errors import ServiceUnavailable


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` for one process on a daemon thread.

    ``/healthz`` answers 200 while the process runs; ``/readyz`` answers 200 once the hooks
    were told the process is ready and 503 otherwise.

    Examples
    --------
    >>> from urllib.request import urlopen
    >>> hooks = PrometheusHooks()
    >>> hooks.on_consumed("fraud", 3)
    >>> with MetricsServer(hooks, "127.0.0.1", 0) as server:
    ...     page = urlopen(f"http://127.0.0.1:{server.port}/metrics").read().decode()
    >>> 'streamlearn_events_consumed_total{pipeline="fraud"} 3.0' in page
    True
    """

    def __init__(self, hooks: PrometheusHooks, host: str, port: int) -> None:
        self.hooks = hooks
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
            server = ThreadingHTTPServer((self.host, self._requested_port), _handler(self.hooks))
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


def _handler(hooks: PrometheusHooks) -> type[BaseHTTPRequestHandler]:
    class MetricsRequestHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, content_type, encode(hooks.registry))
            elif path == "/healthz":
                self._reply(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/readyz":
                ready = hooks.ready
                body = b"ready\n" if ready else b"not ready\n"
                self._reply(200 if ready else 503, "text/plain; charset=utf-8", body)
            else:
                body = b"not found; try /metrics, /healthz or /readyz\n"
                self._reply(404, "text/plain; charset=utf-8", body)

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
