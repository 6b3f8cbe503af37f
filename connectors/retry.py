"""Retry a call to an outside service with exponential backoff and jitter.

When the service stays unreachable it raises :class:`ServiceUnavailable` with a message that
names the service, how long it was tried, the last error, and what the user can do about it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from streamlearn.errors import ServiceUnavailable

T = TypeVar("T")

__all__ = ["backoff_delay", "retry"]


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Return the pause after failed attempt number ``attempt`` (1-based).

    The ceiling doubles per attempt up to ``max_s``; the pause is drawn from the upper half of
    it, so many clients restarting together spread out without ever retrying in a tight loop.

    Examples
    --------
    >>> rng = random.Random(0)
    >>> [round(backoff_delay(n, 0.2, 5.0, rng), 3) for n in (1, 2, 3, 10)]
    [0.184, 0.352, 0.568, 3.147]
    """
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    return ceiling * (0.5 + 0.5 * rng.random())


def retry(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int | None = None,
    timeout_s: float = 60,
    base_s: float = 0.2,
    max_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, float, Exception], None] | None = None,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    hint: str = "",
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Call ``call`` until it returns, retrying errors in ``retry_on`` with backoff.

    Gives up after ``attempts`` tries (when given) or once ``timeout_s`` has passed, whichever
    comes first, and raises :class:`ServiceUnavailable` chained to the last error. Errors not
    in ``retry_on`` propagate at once. ``on_retry(attempt, delay_s, error)`` is called before
    each pause, e.g. to log it. The last pause is cut short so the final try lands on the
    deadline rather than after it.

    Examples
    --------
    >>> calls = []
    >>> def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("refused")
    ...     return "ok"
    >>> retry(flaky, what="Redis", sleep=lambda s: None)
    'ok'
    >>> def down() -> None:
    ...     raise ConnectionError("refused")
    >>> try:
    ...     retry(down, what="Redis", attempts=2, sleep=lambda s: None, hint="Is it running?")
    ... except ServiceUnavailable as error:
    ...     print(error)
    Redis unreachable after 2 attempts over 0.0 s: ConnectionError: refused. Is it running?
    """
    rng = rng or random.Random()
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except retry_on as error:
            elapsed = clock() - started
            remaining = timeout_s - elapsed
            if remaining <= 0 or (attempts is not None and attempt >= attempts):
                raise _gave_up(what, attempt, elapsed, error, hint) from error
            delay = min(backoff_delay(attempt, base_s, max_s, rng), remaining)
            if on_retry is not None:
                on_retry(attempt, delay, error)
            sleep(delay)


def _gave_up(
    what: str, attempt: int, elapsed: float, error: Exception, hint: str
) -> ServiceUnavailable:
    tries = "attempt" if attempt == 1 else "attempts"
    reason = _reason(error)
    message = f"{what} unreachable after {attempt} {tries} over {elapsed:.1f} s: {reason}."
    return ServiceUnavailable(f"{message} {hint}".rstrip())


def _reason(error: Exception) -> str:
    """The error's type and text, the type once (kafka-python's text already starts with it).

    >>> _reason(ConnectionError("refused.")), _reason(TimeoutError("TimeoutError: slow"))
    ('ConnectionError: refused', 'TimeoutError: slow')
    """
    name, text = type(error).__name__, str(error)
    reason = text if text.startswith(name) else f"{name}: {text}"
    return reason.rstrip(". ")
