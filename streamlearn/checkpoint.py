"""Model checkpoints: what the model learned, up to which offsets, signed and versioned.

A checkpoint pairs the pipeline's state (model, evaluator, drift detector, batcher) with the
offsets it has learned up to and the exact count of events learned. Restoring it and reading on
from those offsets means no event is learned twice or skipped across a crash. Each save is a new
version; the store keeps the last few, and a refused one (tampered, unsigned, unloadable) falls
back to the one before.
"""

from __future__ import annotations

import logging
import pickle
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Protocol

import orjson

from streamlearn.errors import StreamlearnError
from streamlearn.signing import sign, verify

Offsets = dict[tuple[str, int], int]

log = logging.getLogger(__name__)

FORMAT = 1
_LIBRARIES = ("streamlearn", "river", "scikit-learn", "numpy")


class CheckpointRefused(StreamlearnError):
    """A stored checkpoint cannot be used: unreadable, unsigned, tampered or not loadable."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One saved version of a pipeline's state and the offsets it covers.

    Examples
    --------
    >>> c = Checkpoint(version=3, created=1.5, learned=10, model_version=4,
    ...                offsets={("t", 0): 10}, state=b"s", fingerprint="ab12")
    >>> Checkpoint.from_fields(c.to_fields()) == c
    True
    >>> Checkpoint.from_fields({"meta": b"[1]", "state": b""})
    Traceback (most recent call last):
    ...
    streamlearn.checkpoint.CheckpointRefused: its metadata is not a JSON object
    """

    version: int
    created: float
    learned: int
    model_version: int
    offsets: Offsets
    state: bytes
    fingerprint: str = ""
    score: dict[str, float] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    signature: str = ""
    rolled_back_from: int | None = None

    def meta(self) -> dict[str, Any]:
        """Everything but the state, as plain JSON-able values (what ``model list`` shows)."""
        return {
            "format": FORMAT,
            "version": self.version,
            "created": self.created,
            "learned": self.learned,
            "model_version": self.model_version,
            "offsets": [
                {"topic": t, "partition": p, "offset": o}
                for (t, p), o in sorted(self.offsets.items())
            ],
            "score": self.score,
            "libraries": self.libraries,
            "fingerprint": self.fingerprint,
            "rolled_back_from": self.rolled_back_from,
        }

    def meta_bytes(self) -> bytes:
        """The metadata as the exact bytes that are stored and signed."""
        return orjson.dumps(self.meta(), option=orjson.OPT_SORT_KEYS)

    def signed(self, key: bytes | None) -> Checkpoint:
        """Return the checkpoint with its signature under ``key`` (unsigned without a key)."""
        return replace(self, signature=sign(key, self.meta_bytes(), self.state) if key else "")

    def to_fields(self) -> dict[str, bytes]:
        """The checkpoint as flat byte fields, e.g. for one Redis hash."""
        return {
            "meta": self.meta_bytes(),
            "state": self.state,
            "signature": self.signature.encode(),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> Checkpoint:
        """Inverse of :meth:`to_fields`; keys may be bytes; raise :class:`CheckpointRefused`."""
        get = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in fields.items()}
        if "meta" not in get or "state" not in get:
            raise CheckpointRefused(f"fields missing: has {sorted(get)}, needs meta and state")
        try:
            meta = orjson.loads(get["meta"])
        except orjson.JSONDecodeError as exc:
            raise CheckpointRefused(f"its metadata is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise CheckpointRefused("its metadata is not a JSON object")
        try:
            return cls(
                version=int(meta["version"]),
                created=float(meta["created"]),
                learned=int(meta["learned"]),
                model_version=int(meta["model_version"]),
                offsets={
                    (str(o["topic"]), int(o["partition"])): int(o["offset"])
                    for o in meta["offsets"]
                },
                state=bytes(get["state"]),
                fingerprint=str(meta.get("fingerprint", "")),
                score={str(k): float(v) for k, v in (meta.get("score") or {}).items()},
                libraries={str(k): str(v) for k, v in (meta.get("libraries") or {}).items()},
                signature=_text(get.get("signature", b"")),
                rolled_back_from=meta.get("rolled_back_from"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointRefused(
                f"its metadata is incomplete or malformed ({exc!r:.120})"
            ) from None


class CheckpointStore(Protocol):
    """Where one pipeline's checkpoint versions live."""

    def versions(self) -> list[int]:
        """Stored versions, newest first."""
        ...

    def load(self, version: int) -> Mapping[Any, Any]:
        """The raw fields of one version (raise :class:`CheckpointRefused` if unreadable)."""
        ...

    def save(self, checkpoint: Checkpoint, keep: int) -> None:
        """Store a new version atomically and drop all but the newest ``keep``."""
        ...


@dataclass(frozen=True, slots=True)
class Restored:
    """A checkpoint that was verified and loaded, and what was refused on the way to it."""

    checkpoint: Checkpoint
    refused: list[str]


class Checkpointer:
    """Saves the pipeline's state with the offsets it learned up to, and restores it.

    ``snapshot`` returns the state to pickle; ``load`` puts an unpickled state back.
    ``fingerprint`` identifies the schema and model configuration: a checkpoint taken under
    another one is not restored, since the model would not fit its inputs. With a ``key``
    every checkpoint is signed (HMAC-SHA256) and one without a valid signature is refused.

    Examples
    --------
    >>> class Memory:
    ...     stored = {}
    ...     def versions(self): return sorted(self.stored, reverse=True)
    ...     def load(self, v): return self.stored[v]
    ...     def save(self, c, keep): self.stored[c.version] = c.to_fields()
    >>> box = {"weights": [1.0]}
    >>> now = [0.0]
    >>> store = Memory()
    >>> cp = Checkpointer(store, lambda: dict(box), box.update, interval_s=10, key=b"k",
    ...                   clock=lambda: now[0], wall=lambda: 100.0)
    >>> cp.due()
    False
    >>> now[0] = 11.0
    >>> cp.due(), cp.save({("t", 0): 5}, learned=5, model_version=2).version, cp.due()
    (True, 1, False)
    >>> box["weights"] = [9.9]
    >>> restored = cp.restore()
    >>> restored.checkpoint.learned, box["weights"]
    (5, [1.0])
    >>> store.stored[1]["state"] += b"x"  # tampered
    >>> cp.restore() is None
    True
    """

    def __init__(
        self,
        store: CheckpointStore,
        snapshot: Callable[[], Any],
        load: Callable[[Any], None],
        interval_s: float,
        fingerprint: str = "",
        key: bytes | None = None,
        keep: int = 5,
        score: Callable[[], dict[str, float]] = dict,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        before_save: Callable[[], object] = lambda: None,
    ) -> None:
        self.store = store
        self.snapshot = snapshot
        # Runs first in every save: state kept outside the checkpoint (per-entity aggregates
        # written behind) is made durable before the offsets it covers are.
        self.before_save = before_save
        self.load = load
        self.interval_s = interval_s
        self.fingerprint = fingerprint
        self.key = key
        self.keep = keep
        self.score = score
        self.clock = clock
        self.wall = wall
        self.last_version = 0
        self._due = clock() + interval_s

    def due(self) -> bool:
        """Whether ``interval_s`` has passed since the last save (or attempt)."""
        return self.clock() >= self._due

    def save(
        self,
        offsets: Offsets,
        learned: int,
        model_version: int,
        rolled_back_from: int | None = None,
    ) -> Checkpoint:
        """Save the state as it is now, as having learned ``learned`` events up to ``offsets``."""
        self._due = self.clock() + self.interval_s  # a failed attempt waits a full interval too
        self.before_save()
        version = max(self.last_version, *self.store.versions()[:1], 0) + 1
        checkpoint = Checkpoint(
            version=version,
            created=self.wall(),
            learned=learned,
            model_version=model_version,
            offsets=dict(offsets),
            state=pickle.dumps(self.snapshot(), protocol=pickle.HIGHEST_PROTOCOL),
            fingerprint=self.fingerprint,
            score=self.score(),
            libraries=library_versions(),
            rolled_back_from=rolled_back_from,
        ).signed(self.key)
        self.store.save(checkpoint, self.keep)
        self.last_version = version
        return checkpoint

    def restore(self) -> Restored | None:
        """Load the newest usable version; ``None`` when there is none that fits.

        Versions that cannot be used are skipped with a warning naming why, newest first.
        """
        refused: list[str] = []
        versions = self.store.versions()
        self.last_version = max(versions, default=0)
        for version in versions:
            try:
                checkpoint = self.open(version)
            except CheckpointRefused as exc:
                refused.append(f"v{version}: {exc}")
                log.warning("checkpoint v%d refused: %s", version, exc)
                continue
            return Restored(checkpoint, refused)
        return None

    def open(self, version: int) -> Checkpoint:
        """Verify one stored version and load its state; raise :class:`CheckpointRefused`."""
        checkpoint = self.verified(self.store.load(version))
        if checkpoint.fingerprint != self.fingerprint:
            raise CheckpointRefused(
                "taken under another schema or model configuration (its features or estimator "
                "changed); it cannot be loaded into this model"
            )
        self.load(self.unpickled(checkpoint))
        return checkpoint

    def verified(self, fields: Mapping[Any, Any]) -> Checkpoint:
        """Parse stored fields and check the signature when a key is set."""
        checkpoint = Checkpoint.from_fields(fields)
        if self.key is not None:
            if not checkpoint.signature:
                raise CheckpointRefused(
                    "it is not signed, and STREAMLEARN_CHECKPOINT_KEY is set: refusing it"
                )
            if not verify(
                self.key, checkpoint.meta_bytes(), checkpoint.state, checkpoint.signature
            ):
                raise CheckpointRefused(
                    "its signature does not match: it was altered, or signed with another key"
                )
        return checkpoint

    def unpickled(self, checkpoint: Checkpoint) -> Any:
        """The checkpoint's state object; raise :class:`CheckpointRefused` if it won't load."""
        ours = library_versions()
        if checkpoint.libraries and checkpoint.libraries != ours:
            changed = {
                k: f"{v} -> {ours.get(k)}"
                for k, v in checkpoint.libraries.items()
                if ours.get(k) != v
            }
            log.warning(
                "checkpoint v%d was saved under other library versions: %s",
                checkpoint.version,
                changed,
            )
        try:
            # Only the operator's own Redis (and, with a key, only signed data) reaches here.
            return pickle.loads(checkpoint.state)
        except Exception as exc:  # unpickling runs arbitrary constructors: anything can fail
            raise CheckpointRefused(
                f"its state cannot be loaded ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a pickled model depends on.

    >>> sorted(library_versions())[:2]
    ['numpy', 'python']
    """
    found = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "none"
    return found


def fingerprint(*parts: str) -> str:
    """A short stable digest of configuration text.

    >>> fingerprint("a", "b") == fingerprint("a", "b") != fingerprint("a", "c")
    True
    """
    import hashlib

    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class RequestStore(Protocol):
    """Where an operator's rollback or import request waits."""

    def request(self) -> dict[str, bytes] | None:
        """The pending request's fields, if any."""
        ...

    def done(self, fields: Mapping[str, bytes]) -> None:
        """Remove the request (unless replaced meanwhile)."""
        ...


class ModelRequests:
    """Polls for ``streamlearn model rollback`` / ``import`` requests and loads their model.

    A request is a mapping with ``action`` = ``rollback`` (and ``version``) or ``import`` (and
    a checkpoint's ``meta``, ``state``, ``signature``). :meth:`poll` returns the checkpoint
    whose state was loaded, at most once a ``interval_s``; a refused request is logged and
    dropped so it does not block the ones after it.
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        store: RequestStore,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checkpointer = checkpointer
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self._next = 0.0

    def due(self) -> bool:
        """Whether :meth:`poll` would look in the store now (at most once an ``interval_s``)."""
        return self.clock() >= self._next

    def poll(self) -> Checkpoint | None:
        """Adopt a pending request now, if there is one and it is time to look."""
        if not self.due():
            return None
        self._next = self.clock() + self.interval_s
        fields = self.store.request()
        if not fields:
            return None
        try:
            checkpoint = self._open(fields)
        except CheckpointRefused as exc:
            log.error("model request %s refused: %s", _describe(fields), exc)
            self.store.done(fields)
            return None
        self.store.done(fields)
        return checkpoint

    def _open(self, fields: Mapping[str, bytes]) -> Checkpoint:
        action = _text(fields.get("action", b""))
        if action == "rollback":
            try:
                version = int(fields.get("version", b""))
            except ValueError:
                raise CheckpointRefused("a rollback request needs an integer version") from None
            return self.checkpointer.open(version)
        if action == "import":
            checkpoint = self.checkpointer.verified(fields)
            if checkpoint.fingerprint != self.checkpointer.fingerprint:
                raise CheckpointRefused("the imported model was made for another configuration")
            self.checkpointer.load(self.checkpointer.unpickled(checkpoint))
            return checkpoint
        raise CheckpointRefused(f"unknown action {action!r} (expected rollback or import)")


def _describe(fields: Mapping[str, bytes]) -> str:
    action = _text(fields.get("action", b"?"))
    return f"{action} v{_text(fields['version'])}" if "version" in fields else action


def model_identity(config: Any) -> str:
    """The fingerprint of what a pipeline's model depends on: its features and estimator.

    Other settings (batching, outputs, drift thresholds) may change freely across restarts.
    A recommendation pipeline's model depends on its whole ``recommendation`` block but ``k``
    and the lists' TTL.
    """
    if getattr(config, "recommendation", None) is not None:
        block = config.recommendation.model_dump(exclude={"k", "recs_ttl_s"})
        return fingerprint("recommendation", repr(sorted((k, repr(v)) for k, v in block.items())))
    schema, model = config.schema_, config.model
    return fingerprint(
        repr(sorted((k, v.type.value, v.buckets) for k, v in schema.features.items())),
        repr((model.estimator, sorted(model.params.items()), model.scale, model.task)),
        *(
            [repr(sorted((k, repr(v)) for k, v in schema.aggregates.items()))]
            if schema.aggregates
            else []
        ),
    )
