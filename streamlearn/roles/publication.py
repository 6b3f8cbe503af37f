"""Model publication: the learner publishes versions, scorers follow the newest.

The learner calls :meth:`ModelPublisher.publish` after learning; at most once a
``publish_interval_s`` it stores the model under its version (its learning steps, the number
stamped on predictions) and points ``latest`` at it, or, when the model has not changed,
only says that ``latest`` is still current. Scorers call :meth:`ModelFollower.newer` before
each batch (never during one): at most once a ``check_interval_s`` it reads the pointer and,
when it names another version, loads that version, verifying its signature when a key is set.

**Staleness** is how long ago the learner last vouched that the served model was its newest
(published it, or confirmed it unchanged): a scorer serving the newest version within
``publish_interval`` + ``check_interval`` of it being published keeps staleness under
twice the interval. An idle learner (nothing to learn) vouches for nothing, so its staleness
grows while nothing is learned; the gauge is meant to be read under load.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from streamlearn.errors import ServiceUnavailable, StreamlearnError
from streamlearn.signing import sign, verify

log = logging.getLogger(__name__)


class ModelRefused(StreamlearnError):
    """A published model that must not be loaded (unsigned under a key, altered, unreadable)."""


@dataclass(frozen=True, slots=True)
class Latest:
    """The ``latest`` pointer: which version, when it was published, when last vouched for."""

    version: int
    published_at: float  # epoch seconds
    fresh_at: float  # epoch seconds


class ModelBoard(Protocol):
    """Where published models live (``connectors.redis_models.RedisModelBoard``)."""

    def publish(self, version: int, state: bytes, signature: str, at: float, keep: int) -> None:
        """Store ``state`` as ``version`` and point ``latest`` at it; keep the last ``keep``."""
        ...

    def confirm(self, version: int, at: float) -> None:
        """Say at ``at`` that ``latest`` (still ``version``) is the learner's newest model."""
        ...

    def latest(self) -> Latest | None:
        """The pointer, or ``None`` before the first publication."""
        ...

    def fetch(self, version: int) -> tuple[bytes, str] | None:
        """A published version's state and signature, or ``None`` if it is gone."""
        ...


class ModelPublisher:
    """The learner's side: publish the model at most once an interval.

    Examples
    --------
    >>> board, now = MemoryBoard(), [100.0]
    >>> pub = ModelPublisher(board, interval_s=1.0, clock=lambda: now[0])
    >>> pub.publish({"w": 1}, version=3), board.latest()
    (True, Latest(version=3, published_at=100.0, fresh_at=100.0))
    >>> now[0] = 100.5; pub.publish({"w": 2}, version=4)  # too soon
    False
    >>> now[0] = 101.0; pub.publish({"w": 2}, version=4), board.latest().version
    (True, 4)
    >>> now[0] = 102.0; pub.publish({"w": 2}, version=4), board.latest().fresh_at
    (True, 102.0)
    """

    def __init__(
        self,
        board: ModelBoard,
        interval_s: float,
        key: bytes | None = None,
        keep: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self.interval_s = interval_s
        self.key = key
        self.keep = keep
        self.clock = clock
        self.version: int | None = None  # last version published
        self._next = 0.0

    def publish(self, model: Any, version: int, force: bool = False) -> bool:
        """Publish ``model`` as ``version`` if an interval has passed (or ``force``)."""
        now = self.clock()
        if not force and now < self._next:
            return False
        if version == self.version:
            self.board.confirm(version, now)
        else:
            state = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
            meta = str(version).encode()
            signature = sign(self.key, meta, state) if self.key else ""
            self.board.publish(version, state, signature, now, self.keep)
            self.version = version
        self._next = now + self.interval_s
        return True


class ModelFollower:
    """A scorer's side: find and load the newest published model between batches.

    Examples
    --------
    >>> board, now = MemoryBoard(), [100.0]
    >>> ModelPublisher(board, 1.0, clock=lambda: now[0]).publish({"w": 1}, version=7)
    True
    >>> follow = ModelFollower(board, check_interval_s=0.1, clock=lambda: now[0])
    >>> now[0] = 100.4; follow.newer(serving=0)
    {'w': 1}
    >>> follow.version, follow.newer(serving=7), round(follow.staleness(), 1)
    (7, None, 0.4)
    """

    def __init__(
        self,
        board: ModelBoard,
        check_interval_s: float,
        key: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self.check_interval_s = check_interval_s
        self.key = key
        self.clock = clock
        self.version: int | None = None  # version loaded
        self.fresh_at: float | None = None
        self._next = 0.0
        self._waiting_logged = False

    def newer(self, serving: int) -> Any | None:
        """The newest published model if it is not ``serving``'s version, else ``None``.

        Before anything was published it raises :class:`ServiceUnavailable` (retried with
        backoff by the runner): a scorer does not serve a model the learner never made.
        """
        now = self.clock()
        if now < self._next and self.version is not None:
            return None
        self._next = now + self.check_interval_s
        latest = self.board.latest()
        if latest is None:
            raise ServiceUnavailable(
                "no model published yet: start the pipeline's learner "
                "(streamlearn run CONFIG --role learner)"
            )
        self.fresh_at = latest.fresh_at
        if latest.version == serving and self.version is not None:
            return None
        model = self._load(latest.version)
        self.version = latest.version
        return model

    def staleness(self) -> float:
        """Seconds since the learner last vouched for the served version (0 before any)."""
        return 0.0 if self.fresh_at is None else max(0.0, self.clock() - self.fresh_at)

    def _load(self, version: int) -> Any:
        found = self.board.fetch(version)
        if found is None:
            raise ServiceUnavailable(f"published model v{version} vanished; looking again")
        state, signature = found
        if self.key is not None:
            if not signature:
                raise ModelRefused(
                    f"published model v{version} is not signed, and STREAMLEARN_CHECKPOINT_KEY "
                    "is set: refusing it"
                )
            if not verify(self.key, str(version).encode(), state, signature):
                raise ModelRefused(f"published model v{version}'s signature does not match")
        try:
            # Only the operator's own Redis (and, with a key, only signed data) reaches here.
            return pickle.loads(state)
        except Exception as exc:  # unpickling runs arbitrary constructors: anything can fail
            raise ModelRefused(f"published model v{version} cannot be loaded ({exc})") from None


class MemoryBoard:
    """A :class:`ModelBoard` in memory, for tests and examples."""

    def __init__(self) -> None:
        self.models: dict[int, tuple[bytes, str]] = {}
        self.pointer: Latest | None = None

    def publish(self, version: int, state: bytes, signature: str, at: float, keep: int) -> None:  # noqa: D102
        self.models[version] = (state, signature)
        for old in sorted(self.models)[:-keep]:
            del self.models[old]
        self.pointer = Latest(version, at, at)

    def confirm(self, version: int, at: float) -> None:  # noqa: D102
        if self.pointer is not None and self.pointer.version == version:
            self.pointer = Latest(version, self.pointer.published_at, at)

    def latest(self) -> Latest | None:  # noqa: D102
        return self.pointer

    def fetch(self, version: int) -> tuple[bytes, str] | None:  # noqa: D102
        return self.models.get(version)
