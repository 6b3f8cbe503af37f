"""Writes predictions to Redis in the documented per-entity layout, and reads them back.

A batch is written by one server-side script call per chunk: each entity's hash is replaced
only by a prediction for an event at least as recent, so a replay never overwrites newer data.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import redis

from connectors.retry import retry
from streamlearn.config_services import redacted
from streamlearn.errors import (
    CredentialsRefused,
    OutputBackpressure,
    OutputRejected,
    ServiceUnavailable,
    StreamlearnError,
)

# KEYS: one prediction hash per entity. ARGV: ttl_ms, the rows as one JSON array (per key:
# score, label, ts, event_id, model_version[, reasons], all strings), scored_at. One argument
# for the rows rather than six or seven per key: redis-py packs each argument in Python.
_WRITE_SCRIPT = """
local ttl = tonumber(ARGV[1])
local rows = cjson.decode(ARGV[2])
local scored_at = ARGV[3]
local written = 0
for i, key in ipairs(KEYS) do
  local r = rows[i]
  local ts = tonumber(r[3])
  local current, stale
  if r[6] then
    current = tonumber(redis.call('HGET', key, 'ts'))
  else
    -- the hash holds one prediction: an older one's reasons must not stay beside this one
    local stored = redis.call('HMGET', key, 'ts', 'reasons')
    current, stale = tonumber(stored[1]), stored[2]
  end
  if current == nil or current <= ts then
    if r[6] then
      redis.call('HSET', key, 'score', r[1], 'label', r[2], 'model_version', r[5],
                 'ts', r[3], 'event_id', r[4], 'scored_at', scored_at, 'reasons', r[6])
    else
      redis.call('HSET', key, 'score', r[1], 'label', r[2], 'model_version', r[5],
                 'ts', r[3], 'event_id', r[4], 'scored_at', scored_at)
      if stale then redis.call('HDEL', key, 'reasons') end
    end
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    written = written + 1
  end
end
return written
"""

_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class PredictionColumns:
    """The predictions of one batch, one entry per event, as columns."""

    entity_ids: Sequence[str]
    event_ids: Sequence[str]
    timestamps_ms: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    model_version: int
    scored_at_ms: int
    # Per event, its reason codes as a JSON array (models that give them), else None.
    reasons: Sequence[str] | None = None
    # Per event, the version that scored it, where the batch was learned event by event.
    model_versions: np.ndarray | None = None


def latest_per_entity(entities: Sequence[str], timestamps: Sequence[int]) -> list[int]:
    """Positions of each entity's most recent event (by time; the later one on a tie).

    >>> latest_per_entity(["a", "b", "a", "a"], [5, 1, 9, 7])
    [1, 2]
    """
    best: dict[str, int] = {}
    for i, (entity, ts) in enumerate(zip(entities, timestamps)):
        j = best.get(entity)
        if j is None or timestamps[j] <= ts:
            best[entity] = i
    return sorted(best.values())


def prediction_key(prefix: str, pipeline: str, entity_id: str) -> str:
    """The Redis key of an entity's latest prediction.

    >>> prediction_key("sl", "fraud", "card-7")
    'sl:fraud:pred:card-7'
    """
    return f"{prefix}:{pipeline}:pred:{entity_id}"


_REFUSALS = (
    redis.AuthenticationError,
    redis.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.NoPermissionError,
)
_CREDENTIALS_HINT = (
    "Check redis.url / STREAMLEARN_REDIS_URL (and redis.username, redis.password / "
    "STREAMLEARN_REDIS_USERNAME, STREAMLEARN_REDIS_PASSWORD)."
)


def refuses_credentials(error: Exception) -> bool:
    """Whether ``error`` is Redis refusing who we are (retrying cannot help).

    >>> refuses_credentials(redis.ResponseError("WRONGPASS invalid username-password pair"))
    True
    >>> refuses_credentials(redis.ConnectionError("Error 111 connecting"))
    False
    """
    if isinstance(error, _REFUSALS):
        return True
    return isinstance(error, redis.ResponseError) and str(error).startswith(
        ("NOAUTH", "WRONGPASS", "NOPERM")
    )


def _refusal(error: Exception, where: str, anonymous: bool) -> CredentialsRefused | None:
    """The permanent error ``error`` amounts to, or None if retrying may help."""
    reason = f"{type(error).__name__}: {error}"
    if refuses_credentials(error):
        refused = "asks for a password" if anonymous else "refused the credentials"
        return CredentialsRefused(f"Redis at {where} {refused} ({reason}). {_CREDENTIALS_HINT}")
    if _untrusted_certificate(error):
        return CredentialsRefused(
            f"Redis at {where} presented a TLS certificate that could not be verified "
            f"({reason}). Check redis.ssl_ca_certs / STREAMLEARN_REDIS_SSL_CA_CERTS and the "
            "host name in redis.url."
        )
    return None


def _untrusted_certificate(error: BaseException) -> bool:
    # redis-py wraps the ssl error in a ConnectionError; the cause stays in the chain.
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def connect(
    url: str,
    timeout_s: float = 30.0,
    *,
    username: str | None = None,
    password: str | None = None,
    ssl_ca_certs: str | None = None,
) -> redis.Redis:
    """Open a client and wait, with backoff, until the server answers PING.

    ``username`` and ``password`` take precedence over credentials in ``url``; a ``rediss://``
    URL uses TLS, verified against ``ssl_ca_certs`` when given. An unreachable server is
    retried for ``timeout_s`` and then reported as :class:`ServiceUnavailable`; refused
    credentials and an untrusted TLS certificate raise :class:`CredentialsRefused` at once.
    Messages never show the password.
    """
    where = redacted(url)
    try:
        pool = redis.ConnectionPool.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    except ValueError as exc:
        raise ServiceUnavailable(f"invalid Redis URL {where}: {exc}") from None
    explicit = {"username": username, "password": password, "ssl_ca_certs": ssl_ca_certs}
    # Set after parsing: from_url would let credentials in the URL win over these.
    pool.connection_kwargs.update({k: v for k, v in explicit.items() if v is not None})
    client = redis.Redis.from_pool(pool)  # owns the pool, as from_url would
    anonymous = pool.connection_kwargs.get("password") is None

    def ping() -> None:
        try:
            client.ping()
        except redis.RedisError as error:
            refusal = _refusal(error, where, anonymous)
            if refusal is not None:
                raise refusal from None
            raise

    retry(
        ping,
        what=f"Redis at {where}",
        timeout_s=timeout_s,
        retry_on=(redis.RedisError, OSError),
        hint="Check redis.url in the configuration, or set STREAMLEARN_REDIS_URL.",
    )
    return client


class PredictionStore:
    """Per-entity prediction hashes ``{prefix}:{pipeline}:pred:{entity}`` with a TTL."""

    def __init__(self, client: redis.Redis, prefix: str, pipeline: str, ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.pipeline = pipeline
        self.ttl_ms = ttl_s * 1000
        self._script = client.register_script(_WRITE_SCRIPT)

    def write(self, predictions: PredictionColumns) -> int:
        """Write the latest prediction per entity; return how many hashes were updated."""
        return self.send(predictions)()

    def send(self, predictions: PredictionColumns) -> Callable[[], int]:
        """Send the write and return at once; the call returned waits for Redis's replies.

        The script calls (one per chunk) go out together on one pooled connection, so Redis
        runs them while the caller does other work; the connection goes back to the pool when
        the call returns. Call it exactly once. It returns how many hashes were updated, or
        raises as :meth:`write` does: the write may then be sent again (newest wins).
        """
        chunks = self._chunks(predictions)
        if not chunks:
            return lambda: 0
        pool = self.client.connection_pool
        sha = self._script.sha
        try:
            connection = pool.get_connection()  # connects: a server that is down raises here
        except redis.RedisError as exc:
            raise _classified(exc, "writing predictions to Redis") from exc
        try:
            connection.send_packed_command(
                connection.pack_commands(
                    [("EVALSHA", sha, len(keys), *keys, *args) for keys, args in chunks]
                )
            )
        except BaseException as exc:
            connection.disconnect()
            pool.release(connection)
            if isinstance(exc, redis.RedisError):
                raise _classified(exc, "writing predictions to Redis") from exc
            raise

        def replies() -> int:
            written, refused = 0, []
            try:
                for _ in chunks:
                    try:
                        written += int(connection.read_response())
                    except redis.ResponseError as exc:  # this chunk's; the others still come
                        refused.append(exc)
            except BaseException as exc:
                connection.disconnect()  # what is left unread on it is unknown
                if isinstance(exc, redis.RedisError):
                    raise _classified(exc, "writing predictions to Redis") from exc
                raise
            finally:
                pool.release(connection)
            if any(isinstance(e, redis.exceptions.NoScriptError) for e in refused):
                # The server does not hold the script (the first write, or Redis restarted):
                # the script object loads it, and any other refusal comes again, classified.
                # Chunks that landed are written again: harmless (newest wins).
                return sum(self._call(keys, args) for keys, args in chunks)
            if refused:
                raise _classified(refused[0], "writing predictions to Redis") from refused[0]
            return written

        return replies

    def _chunks(self, predictions: PredictionColumns) -> list[tuple[list[str], list[Any]]]:
        """The script's keys and arguments, one pair per chunk of at most ``_CHUNK`` entities."""
        order = latest_per_entity(predictions.entity_ids, predictions.timestamps_ms.tolist())
        entities = [predictions.entity_ids[i] for i in order]
        scores = predictions.scores[order].tolist()
        labels = predictions.labels[order].astype(np.int8).tolist()
        ts = predictions.timestamps_ms[order].tolist()
        events = [predictions.event_ids[i] for i in order]
        scored_at = predictions.scored_at_ms
        reasons = None if predictions.reasons is None else [predictions.reasons[i] for i in order]
        labels_text = list(map(str, labels))
        ts_text = list(map(str, ts))
        scores_text = list(map(repr, scores))
        if predictions.model_versions is None:
            versions = [str(predictions.model_version)] * len(order)
        else:
            versions = list(map(str, predictions.model_versions[order].tolist()))
        if reasons is None:
            rows: list[Any] = list(zip(scores_text, labels_text, ts_text, events, versions))
        else:
            rows = list(zip(scores_text, labels_text, ts_text, events, versions, reasons))
        head = prediction_key(self.prefix, self.pipeline, "")
        return [
            (
                [head + entity for entity in entities[start : start + _CHUNK]],
                [self.ttl_ms, orjson.dumps(rows[start : start + _CHUNK]), scored_at],
            )
            for start in range(0, len(order), _CHUNK)
        ]

    def _call(self, keys: list[str], args: list[Any]) -> int:
        try:
            return int(self._script(keys=keys, args=args))
        except redis.RedisError as exc:
            raise _classified(exc, "writing predictions to Redis") from exc

    def read(self, entity_id: str) -> dict[str, str] | None:
        """The stored prediction hash of an entity, decoded, or ``None``."""
        raw = self.client.hgetall(prediction_key(self.prefix, self.pipeline, entity_id))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}


def _classified(exc: redis.RedisError, doing: str) -> StreamlearnError:
    """Worth retrying (down, slow, loading, full, failing over) or refused for good (WRONGTYPE)."""
    from redis import exceptions as e

    transient = isinstance(
        exc,
        e.ConnectionError
        | e.TimeoutError
        | e.OutOfMemoryError
        | e.ReadOnlyError
        | e.TryAgainError
        | e.MasterDownError,
    ) or str(exc).startswith("BUSY")
    if transient:
        return OutputBackpressure(f"{doing} failed: {exc}")
    return OutputRejected(f"{doing} was refused by Redis: {exc}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
