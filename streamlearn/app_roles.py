"""The scale-out half of the composition root: a scorer's or the learner's runner (``--role``).

See :mod:`streamlearn.roles` for what each role does; this wires them to Kafka and Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis import Redis

from connectors.outputs import LearnerOutputs
from connectors.redis_lock import PipelineTaken, ReplicaLock
from connectors.redis_models import RedisModelBoard
from streamlearn.batching import AdaptiveBatcher
from streamlearn.config import PipelineCommon, checkpoint_key
from streamlearn.errors import ConfigError
from streamlearn.roles.publication import ModelFollower, ModelPublisher
from streamlearn.roles.tasks import LearnerTask, ScorerTask
from streamlearn.runner import PipelineRunner
from streamlearn.tasks import Task
from streamlearn.tasks.classification import ClassificationTask

if TYPE_CHECKING:
    from streamlearn.app import App
    from streamlearn.health import Readiness

log = logging.getLogger(__name__)


def role_runner(
    app: App, config: PipelineCommon, task: Task, client: Redis, readiness: Readiness
) -> PipelineRunner:
    """The runner of a scorer or of the learner (``app.role``), wired to Kafka and Redis."""
    if not isinstance(task, ClassificationTask):
        raise ConfigError(
            f"pipelines.{config.name}: --role {app.role} is built for classification "
            f"pipelines; a {config.task} pipeline runs as one process (--role all)"
        )
    prefix, key = app.config.redis.prefix, checkpoint_key()
    batcher = AdaptiveBatcher(config.batching)
    settings = config.roles
    checkpointer = restored = requests = None
    if app.role == "scorer":
        follower = ModelFollower(
            RedisModelBoard(client, prefix, config.name),
            settings.check_interval_ms / 1000,
            key=key,
        )

        def served(staleness_s: float) -> None:
            app.hooks.on_model_staleness(config.name, staleness_s)
            app.hooks.on_model_version(config.name, task.model_version)

        scorer = ScorerTask(task, follower, served)
        states = app._entity_states(config, task, client)  # written with every batch
        outputs: Any = app._outputs(config, client, states)
        outputs.learn_topic, outputs.examples = config.learn_topic, scorer.examples_messages
        pipeline: Task = scorer
        fence: Callable[[], None] = _unfenced
    else:
        lock = learner_lock(app, client, config)
        board = RedisModelBoard(client, prefix, config.name, fence=lambda: lock.value)
        publisher = ModelPublisher(
            board, settings.publish_interval_ms / 1000, key=key, keep=settings.keep_versions
        )
        learner = LearnerTask(task, publisher)
        checkpointer, restored, requests = app._restore(config, learner, batcher, client, lock)
        learner.publish(force=True)  # scorers serve nothing before the learner's model
        outputs = LearnerOutputs(config.name, app._producer(config), config.dead_letter_topic)
        pipeline, fence = learner, lock.check
    return app._wire(
        config,
        pipeline,
        outputs,
        batcher,
        readiness,
        checkpointer=checkpointer,
        restored=restored,
        requests=requests,
        fence=fence,
    )


def learner_lock(app: App, client: Redis, config: PipelineCommon) -> ReplicaLock:
    """The pipeline's lock; while another learner holds it, wait as its standby."""
    prefix, ttl_s = app.config.redis.prefix, config.checkpoint.lock_ttl_s
    lock = ReplicaLock(client, prefix, config.name, ttl_s)
    announced = False
    while True:
        try:
            lock.acquire()
            break
        except PipelineTaken as exc:
            if app.stop.is_set():
                raise
            if not announced:
                log.warning("%s: standby learner (%s); waiting to take over", config.name, exc)
                announced = True
    if announced:
        log.warning("%s: this standby is now the learner", config.name)
    app._locks.append(lock)
    return lock


def _unfenced() -> None:
    """Scorers hold no lock: nothing can fence them."""
