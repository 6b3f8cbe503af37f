"""The composition root: builds sources, pipelines, outputs and metrics from a configuration.

This (with :mod:`streamlearn.app_roles`, its scale-out half) and the CLI are the only parts of
``streamlearn`` that import ``connectors``. ``App.run``
runs every pipeline on its own thread until stopped, then shuts them down cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from redis import Redis

from connectors.kafka import KafkaSink, KafkaSource, ensure_topics, wait_for_broker
from connectors.metrics_server import MetricsServer
from connectors.outputs import BatchOutputs
from connectors.prometheus import PrometheusHooks
from connectors.recommendation_outputs import RecommendationOutputs
from connectors.redis_aggregates import AggregateStore
from connectors.redis_checkpoints import RedisCheckpointStore
from connectors.redis_labels import RedisLabelStore
from connectors.redis_lock import ReplicaLock
from connectors.redis_recs import RecommendationStore
from connectors.redis_store import PredictionStore, connect
from streamlearn.app_roles import role_runner
from streamlearn.batching import AdaptiveBatcher
from streamlearn.checkpoint import Checkpoint, Checkpointer, ModelRequests, model_identity
from streamlearn.config import (
    AppConfig,
    PipelineCommon,
    RecommendationPipelineConfig,
    checkpoint_key,
)
from streamlearn.errors import StreamlearnError
from streamlearn.health import HealthMonitor, Readiness
from streamlearn.hooks import FanOutHooks, PipelineHooks
from streamlearn.runner import PipelineRunner, RunStats
from streamlearn.state_cache import CachedStateStore
from streamlearn.tasks import Task, build_task
from streamlearn.tasks.entity_features import StateStore

log = logging.getLogger(__name__)


@dataclass
class App:
    """Everything one ``streamlearn run`` process owns."""

    config: AppConfig
    observers: tuple[PipelineHooks, ...] = ()
    metrics: PrometheusHooks = field(default_factory=PrometheusHooks)
    stop: threading.Event = field(default_factory=threading.Event)
    runners: list[PipelineRunner] = field(default_factory=list)
    metrics_server: MetricsServer | None = None
    role: str = "all"  # all | scorer | learner (see streamlearn.roles)

    def __post_init__(self) -> None:
        health = self.config.health
        self.health = HealthMonitor(
            [p.name for p in self.config.pipelines],
            stall_s=health.stall_s,
            liveness_timeout_s=health.liveness_timeout_s,
        )
        self.hooks: PipelineHooks = FanOutHooks(self.metrics, self.health, *self.observers)
        self._locks: list[ReplicaLock] = []

    def run(self, max_events: int | None = None) -> dict[str, RunStats]:
        """Build every model, connect, then run every pipeline until stopped or ``max_events``.

        A bad model is reported before any service is contacted. Metrics stay served after
        this returns, until :meth:`close`.
        """
        # Built once here, where `streamlearn check` builds them, and handed to the runners.
        self._pipelines = {p.name: build_task(p) for p in self.config.pipelines}
        self.serve_metrics()
        self._connect()
        names = [p.name for p in self.config.pipelines]
        self.health.watch(names)
        readiness = Readiness(names, self.hooks)
        self.runners = []
        _warn_if_unsigned(self.config)
        try:
            for pipeline in self.config.pipelines:
                self.runners.append(self._runner(pipeline, readiness))
            return self._run_all(max_events)
        finally:
            self.hooks.on_ready(False)
            self.health.stopped()
            for runner in self.runners:
                # Leaving the group revokes its partitions; everything learned was settled
                # (or, after a failure, must not be committed), so the revoke hook is off.
                if hasattr(runner.source, "on_revoke"):  # either Kafka client's source
                    runner.source.on_revoke = None
                runner.source.close()
                runner.outputs.close()
            for lock in self._locks:
                lock.release()
            self._locks = []

    def serve_metrics(self) -> None:
        """Start ``/metrics``, ``/healthz`` and ``/readyz`` (once; port 0 in config disables)."""
        settings = self.config.metrics
        if settings.port and self.metrics_server is None:
            server = MetricsServer(self.metrics, settings.host, settings.port, self.health)
            self.metrics_server = server.start()

    def close(self) -> None:
        """Stop serving metrics."""
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> None:
        # Redis first: refused credentials fail at once rather than after a broker retry.
        # (Only a check: each pipeline opens its own client in _runner.)
        redis = self.config.redis
        connect(redis.url, timeout_s=redis.connect_timeout_s, **redis.client_options()).close()
        kafka = self.config.kafka
        security = kafka.client_options()
        wait_for_broker(kafka.bootstrap, timeout_s=kafka.connect_timeout_s, security=security)
        topics = {p.dead_letter_topic for p in self.config.pipelines}
        topics |= {
            p.outputs.predictions_topic
            for p in self.config.pipelines
            if p.outputs.predictions_topic
        }
        topics |= {p.labels.topic for p in self.config.pipelines if p.labels is not None}
        if self.role != "all":
            topics |= {p.learn_topic for p in self.config.pipelines}
        ensure_topics(kafka.bootstrap, sorted(topics), security=security)

    def _runner(self, config: PipelineCommon, readiness: Readiness) -> PipelineRunner:
        redis_settings = self.config.redis
        client = connect(
            redis_settings.url,
            timeout_s=redis_settings.connect_timeout_s,
            **redis_settings.client_options(),
        )
        pipeline = self._pipelines.pop(config.name, None) or build_task(config)
        if self.role != "all":
            return self._role_runner(config, pipeline, client, readiness)
        batcher = AdaptiveBatcher(config.batching)
        # One process per pipeline until roles exist: a second replica is refused here.
        prefix, ttl_s = self.config.redis.prefix, config.checkpoint.lock_ttl_s
        lock = ReplicaLock(client, prefix, config.name, ttl_s).acquire()
        self._locks.append(lock)
        checkpointer, restored, requests = self._restore(config, pipeline, batcher, client, lock)
        states = self._entity_states(config, pipeline, client)
        if states is not None and checkpointer is not None:
            # Aggregate states are written once per checkpoint, just before it is saved.
            states.write_behind = True
            checkpointer.before_save = states.flush
        outputs = self._outputs(config, client, states)
        return self._wire(
            config,
            pipeline,
            outputs,
            batcher,
            readiness,
            checkpointer=checkpointer,
            restored=restored,
            requests=requests,
            fence=lock.check,
        )

    def _wire(
        self,
        config: PipelineCommon,
        pipeline: Task,
        outputs: Any,
        batcher: AdaptiveBatcher,
        readiness: Readiness,
        **runner_options: Any,
    ) -> PipelineRunner:
        """Open the pipeline's source and join it, the task and its outputs in a runner."""
        try:
            source = self._source(config)
        except BaseException:
            outputs.close()
            raise
        runner = PipelineRunner(
            pipeline,
            source,
            outputs,
            batcher,
            self.hooks,
            on_ready=lambda ready: readiness.set(config.name, ready),
            **runner_options,
        )
        source.on_assign = runner.assigned
        source.on_revoke = runner.revoke
        states = getattr(outputs, "states", None)
        if isinstance(states, CachedStateStore):
            _also_on_moves(source, states.moved)
        return runner

    def _role_runner(
        self, config: PipelineCommon, task: Task, client: Redis, readiness: Readiness
    ) -> PipelineRunner:
        return role_runner(self, config, task, client, readiness)

    def _source(self, config: PipelineCommon) -> KafkaSource:
        kafka = self.config.kafka
        if self.role == "learner":
            topics = [config.learn_topic]
        else:
            topics = [config.source.topic] + ([config.labels.topic] if config.labels else [])
        group = config.source.group or f"streamlearn-{config.name}"
        source_class: Any = KafkaSource
        if kafka.client == "confluent":
            # Imported here: confluent-kafka is an optional extra (a clear error without it).
            from connectors.kafka_confluent import ConfluentSource

            source_class = ConfluentSource  # the same interface as KafkaSource
        source: KafkaSource = source_class(
            kafka.bootstrap,
            topics,
            f"{group}-learner" if self.role == "learner" else group,
            client_id=f"{kafka.client_id}-{config.name}",
            start=config.source.start,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            max_poll_records=config.source.poll_max_records,
            fetch_max_wait_ms=fetch_wait_ms(config.batching.latency_target_ms),
            security=kafka.client_options(),
        )
        return source

    def _entity_states(
        self, config: PipelineCommon, task: Task, client: Redis
    ) -> CachedStateStore | None:
        # Per-entity aggregate state lives in Redis, so a partition can move between processes;
        # what this process wrote is read back from memory while it owns the partition.
        features = getattr(task, "entity_features", None)
        if features is None:
            return None
        ttl_s = features.aggregator.state_ttl_s
        stored = AggregateStore(client, self.config.redis.prefix, config.name, ttl_s)
        features.store = CachedStateStore(stored, ttl_s)
        return features.store

    def _outputs(
        self, config: PipelineCommon, client: Redis, states: StateStore | None = None
    ) -> BatchOutputs | RecommendationOutputs:
        producer = self._producer(config)
        prefix = self.config.redis.prefix
        if isinstance(config, RecommendationPipelineConfig):
            lists = RecommendationStore(
                client, prefix, config.name, config.recommendation.recs_ttl_s
            )
            return RecommendationOutputs(
                config.name,
                lists,
                producer,
                config.dead_letter_topic,
                config.outputs.predictions_topic,
            )
        store = PredictionStore(
            client, self.config.redis.prefix, config.name, config.outputs.prediction_ttl_s
        )
        return BatchOutputs(
            config.name,
            store,
            producer,
            config.dead_letter_topic,
            config.outputs.predictions_topic,
            labels=RedisLabelStore(
                client,
                self.config.redis.prefix,
                config.name,
                config.labels.horizon_s,
                # Only the one owner of offsets and checkpoints knows what may be forgotten;
                # a scorer's pending events go by their TTL alone.
                owner=self.role == "all" and config.checkpoint.enabled,
            )
            if config.labels is not None
            else None,
            states=states,
        )

    def _producer(self, config: PipelineCommon) -> KafkaSink:
        # One producer per pipeline: a flush then waits for, and reports, only its own messages.
        kafka = self.config.kafka
        return KafkaSink(
            kafka.bootstrap,
            client_id=f"{kafka.client_id}-{config.name}-out",
            security=kafka.client_options(),
        )

    def _restore(
        self,
        config: PipelineCommon,
        pipeline: Task,
        batcher: AdaptiveBatcher,
        client: Redis,
        lock: ReplicaLock,
    ) -> tuple[Checkpointer | None, Checkpoint | None, ModelRequests | None]:
        settings = config.checkpoint
        if not settings.enabled:
            return None, None, None
        store = RedisCheckpointStore(
            client,
            self.config.redis.prefix,
            config.name,
            fence=lambda: lock.value,
            lease_ms=lock.ttl_ms,
        )

        def snapshot() -> dict[str, Any]:
            return {"pipeline": pipeline.snapshot(), "batcher": batcher.snapshot()}

        def load(state: dict[str, Any]) -> None:
            pipeline.load_snapshot(state["pipeline"])
            batcher.resume(state.get("batcher") or {})

        checkpointer = Checkpointer(
            store,
            snapshot,
            load,
            settings.interval_s,
            fingerprint=model_identity(config),
            key=checkpoint_key(),
            keep=settings.keep,
            score=pipeline.scores,
        )
        requests = ModelRequests(checkpointer, store)
        restored = checkpointer.restore()
        if restored is None:
            if checkpointer.last_version:
                log.error(
                    "%s: no stored checkpoint could be used; starting a fresh model that reads "
                    "on from the consumer group's commits",
                    config.name,
                )
            return checkpointer, None, requests
        checkpoint = restored.checkpoint
        log.info(
            "%s: restored checkpoint v%d (model version %d, %d events learned) up to %s",
            config.name,
            checkpoint.version,
            checkpoint.model_version,
            checkpoint.learned,
            checkpoint.offsets,
        )
        self.hooks.on_model_version(config.name, pipeline.model_version)
        self.hooks.on_checkpoint(config.name, checkpoint.created)
        return checkpointer, checkpoint, requests

    def _run_all(self, max_events: int | None) -> dict[str, RunStats]:
        results: dict[str, RunStats] = {}
        errors: list[tuple[str, BaseException]] = []

        def work(runner: PipelineRunner) -> None:
            try:
                results[runner.pipeline.name] = runner.run(self.stop, max_events)
            except BaseException as exc:  # a failing pipeline stops the others cleanly
                errors.append((runner.pipeline.name, exc))
                self.stop.set()
                self.hooks.on_failed(runner.pipeline.name, _failure(exc))

        threads = [
            threading.Thread(target=work, args=(r,), name=f"pipeline-{r.pipeline.name}")
            for r in self.runners
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
        if len(errors) == 1:
            raise errors[0][1]
        if errors:
            # Several pipelines failed: report each, not just the first.
            raise PipelinesFailed("; ".join(f"{name}: {exc}" for name, exc in errors)) from errors[
                0
            ][1]
        return results


class PipelinesFailed(StreamlearnError):
    """More than one pipeline stopped on an error; the message names each."""


def _failure(exc: BaseException) -> str:
    """What a pipeline died of, for ``/healthz``: ``Type: message``, the type named once.

    >>> _failure(ValueError("bad")), _failure(KeyError()), _failure(ValueError("ValueError: x"))
    ('ValueError: bad', 'KeyError', 'ValueError: x')
    """
    text, kind = str(exc), type(exc).__name__
    if not text:
        return kind
    return text if text.startswith(kind) else f"{kind}: {text}"


def _warn_if_unsigned(config: AppConfig) -> None:
    if checkpoint_key() is None and any(p.checkpoint.enabled for p in config.pipelines):
        log.warning(
            "STREAMLEARN_CHECKPOINT_KEY is not set: model checkpoints are written unsigned and "
            "loaded without verification. Set it to sign them and refuse altered ones."
        )


def fetch_wait_ms(latency_target_ms: float) -> int:
    """How long the broker may hold a fetch: a fifth of the latency target, 5..500 ms.

    >>> fetch_wait_ms(100), fetch_wait_ms(10_000)
    (20, 500)
    """
    return int(min(500, max(5, latency_target_ms / 5)))


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM/SIGINT while inside the block (main thread only)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _also_on_moves(source: KafkaSource, moved: Callable[[list[tuple[str, int]]], None]) -> None:
    """Tell ``moved`` of every partition assigned or revoked, before the source's own hooks."""
    assigned, revoked = source.on_assign, source.on_revoke

    def on_assign(partitions: list[tuple[str, int]]) -> None:
        moved(partitions)
        if assigned is not None:
            assigned(partitions)

    def on_revoke(partitions: list[tuple[str, int]]) -> None:
        moved(partitions)
        if revoked is not None:
            revoked(partitions)

    source.on_assign, source.on_revoke = on_assign, on_revoke
