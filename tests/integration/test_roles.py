"""Scale-out with real processes: one learner (and its standby), two scorers, one stream.

A scorer is SIGKILLed mid-stream (its partitions move to the other), then the learner is
(the standby takes over from the last checkpoint). At the end every event has a prediction,
every malformed message a dead letter, the learner's checkpoint counts each event learned
exactly once, and every prediction names a model version the learner published.
"""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from connectors.embedded import free_port
from connectors.kafka import committed_offsets, end_offsets, ensure_topics
from connectors.redis_models import RedisModelBoard
from tests.integration.processes import (
    PIPELINE,
    Processor,
    Producer,
    build_stream,
    collect,
    newest_checkpoint,
    processor_config,
    write_config,
)

EVENTS, MALFORMED, PARTITIONS = 6_000, 30, 4
PRODUCE_OVER_S = 14.0


def role_config(base: dict[str, Any], directory: Path) -> Path:
    """``base`` with a metrics port of its own, written under ``directory``."""
    config = copy.deepcopy(base)
    config["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    directory.mkdir()
    return write_config(directory, config)[0]


def wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_two_scorers_and_a_learner_lose_nothing_and_learn_each_event_once(
    tmp_path: Path, broker: str, redis_url: str, topic: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    base = processor_config(broker, redis_url, topic, prefix)
    pipeline = base["pipelines"][0]
    # Every published version stays, so each prediction's version can be looked up.
    pipeline["roles"] = {"publish_interval_ms": 300, "keep_versions": 1000}
    stream = build_stream(EVENTS, MALFORMED, seed=3)
    ensure_topics(broker, [topic], partitions=PARTITIONS)

    def processor(name: str, role: str) -> Processor:
        return Processor(role_config(base, tmp_path / name), tmp_path / name, ("--role", role))

    learner, standby = processor("learner", "learner"), processor("standby", "learner")
    scorers = [processor("scorer-1", "scorer"), processor("scorer-2", "scorer")]
    everyone = [learner, standby, *scorers]
    producer = Producer(broker, topic, stream, PRODUCE_OVER_S)
    try:
        learner.start()
        wait(learner.ready, 60, "the learner to be ready")
        standby.start()
        for s in scorers:
            s.start()
        wait(lambda: all(s.ready() for s in scorers), 60, "both scorers to be ready")
        producer.start()
        wait(lambda: scorers[0].predictions() > 300, 30, "scorer 1 to score")
        scorers[0].kill()  # its partitions move to scorer 2
        time.sleep(3)
        learner.kill()  # the standby takes over from the last checkpoint
        producer.finish()
        ends = end_offsets(broker, topic)

        def done() -> bool:
            committed = committed_offsets(broker, f"group-{topic}")
            scored = all(committed.get((topic, p), 0) >= e for p, e in ends.items())
            learned = newest_checkpoint(standby.config_path).get("learned")
            return scored and learned == len(stream.events)

        wait(done, 90, "every event scored and learned")
        outcome = collect(broker, redis_url, prefix, topic, stream, standby.config_path)
        client = redis.Redis.from_url(redis_url)
        published = set(RedisModelBoard(client, prefix, PIPELINE).versions())
        served = {
            int(v)
            for key in client.scan_iter(f"{prefix}:{PIPELINE}:pred:*", count=1000)
            if (v := client.hget(key, "model_version")) is not None
        }
        standby_log = standby.logs[-1].read_text()
        outcome.figures.update(published_versions=len(published), served_versions=len(served))
        outcome.report("roles: 2 scorers + learner, scorer and learner killed")
        assert outcome.unpredicted == [], f"{len(outcome.unpredicted)} entities unpredicted"
        assert outcome.learned == len(stream.events), "not each event learned exactly once"
        assert not outcome.missing_dead_letters
        assert outcome.miscounted == [], "a card's aggregate does not count each event once"
        assert served and served <= published, f"unpublished versions served: {served - published}"
        assert len(served) > 1, "the scorers never picked up a newer model"
        assert "standby learner" in standby_log and "now the learner" in standby_log
    except BaseException:
        for p in everyone:
            print(p.tails(30, 10))
        raise
    finally:
        for p in everyone:
            p.close()
