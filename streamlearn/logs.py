"""Log lines that name their pipeline and role, readable or JSON, with passwords masked.

Each pipeline runs on a thread named ``pipeline-<name>`` (see :mod:`streamlearn.app`); a filter
reads the name from there, so no call site has to pass it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson

from streamlearn.config_services import mask_urls

LOG_FORMATS = ("text", "json")
"""What ``--log-format`` accepts."""

ROLE = "all"
"""The role a process plays by default: it scores and learns (``streamlearn run --role``)."""

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(where)s] %(name)s: %(message)s"
_THREAD_PREFIX = "pipeline-"


def current_pipeline() -> str:
    """The pipeline the current thread runs, or ``-`` outside one.

    >>> current_pipeline()
    '-'
    >>> seen = []
    >>> t = threading.Thread(target=lambda: seen.append(current_pipeline()), name="pipeline-fraud")
    >>> t.start(); t.join(); seen
    ['fraud']
    """
    name = threading.current_thread().name
    return name[len(_THREAD_PREFIX) :] if name.startswith(_THREAD_PREFIX) else "-"


class PipelineContext(logging.Filter):
    """Adds ``pipeline`` and ``role`` to every record, and masks URL passwords in its message.

    Examples
    --------
    >>> record = logging.LogRecord("x", logging.INFO, "f", 1, "to %s", ("redis://u:pw@h/0",), None)
    >>> PipelineContext().filter(record)
    True
    >>> record.getMessage(), record.pipeline, record.role
    ('to redis://u:***@h/0', '-', 'all')
    """

    def __init__(self, role: str = ROLE) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        if not hasattr(record, "pipeline"):
            record.pipeline = current_pipeline()
        role = getattr(record, "role", self.role)
        record.role = role
        # Text lines name the role only when the process plays one: ``[fraud scorer]``.
        pipeline = getattr(record, "pipeline", "-")
        record.where = pipeline if role == ROLE else f"{pipeline} {role}"
        message = record.getMessage()
        masked = mask_urls(message)
        if masked != message:  # freeze the masked text: arguments may hold the secret
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, pipeline, role, message (and the error).

    Examples
    --------
    >>> record = logging.LogRecord("streamlearn.app", logging.WARNING, "f", 1, "slow", None, None)
    >>> record.created = 0.0
    >>> _ = PipelineContext().filter(record)
    >>> JsonFormatter().format(record)
    '{"ts":"1970-01-01T00:00:00.000Z","level":"WARNING","logger":"streamlearn.app","pipeline":"-","role":"all","message":"slow"}'
    """

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102
        line: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "pipeline": getattr(record, "pipeline", "-"),
            "role": getattr(record, "role", ROLE),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = mask_urls(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802, D102
        seconds = time.gmtime(record.created)
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.created % 1 * 1000):03d}Z"
        )


class _MaskedText(logging.Formatter):
    """The readable format, with passwords masked in tracebacks too."""

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return mask_urls(super().formatException(ei))


def configure_logging(level: str = "INFO", log_format: str = "text", role: str = ROLE) -> None:
    """Send every log record to stderr, readable (``text``) or as JSON lines (``json``).

    Replaces the handler an earlier call installed, so calling it again switches format;
    handlers others installed (a test runner's) are left alone.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: expected one of {LOG_FORMATS}")
    handler = _OurHandler()
    handler.addFilter(PipelineContext(role))
    handler.setFormatter(JsonFormatter() if log_format == "json" else _MaskedText(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class _OurHandler(logging.StreamHandler):
    """The stderr handler :func:`configure_logging` installs (so it can find it again)."""
