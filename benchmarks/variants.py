"""The batching variants compared, and the processor configuration each one runs with.

Every variant is the packaged fraud configuration with only its ``batching`` section changed,
pointed at a fresh topic and consumer group so runs never see each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamlearn.config import AppConfig, parse_config
from streamlearn.demo_tasks import DEMO_TASKS, demo_config

LATENCY_TARGET_MS = 100.0


@dataclass(frozen=True, slots=True)
class Variant:
    """One batching policy: a fixed size (``min_size == max_size``) or the adaptive range.

    Examples
    --------
    >>> Variant("fixed-32", 32, 32).fixed, ADAPTIVE.fixed
    (True, False)
    """

    name: str
    min_size: int
    max_size: int

    @property
    def fixed(self) -> bool:
        """Whether the size never changes."""
        return self.min_size == self.max_size


FIXED = tuple(Variant(f"fixed-{n}", n, n) for n in (1, 32, 256, 2048))
ADAPTIVE = Variant("adaptive", 1, 2048)
VARIANTS = (*FIXED, ADAPTIVE)


def variant_config(variant: Variant, bootstrap: str, redis_url: str, topic: str) -> AppConfig:
    """The fraud configuration for ``variant``, reading ``topic`` in a group of the same name.

    Examples
    --------
    >>> cfg = variant_config(FIXED[1], "127.0.0.1:9092", "redis://127.0.0.1:6379/0", "t-1")
    >>> b = cfg.pipelines[0].batching
    >>> b.min_size, b.max_size, b.latency_target_ms, cfg.pipelines[0].source.group
    (32, 32, 100.0, 't-1')
    """
    fraud = demo_config(DEMO_TASKS["fraud"], bootstrap, redis_url, metrics_port=0)
    base = fraud.model_dump(by_alias=True)
    pipeline = base["pipelines"][0]
    pipeline["source"] = {**pipeline["source"], "topic": topic, "group": topic}
    pipeline["outputs"] = {**pipeline["outputs"], "dead_letter_topic": f"{topic}.dlq"}
    pipeline["batching"] = {
        **pipeline["batching"],
        "latency_target_ms": LATENCY_TARGET_MS,
        "min_size": variant.min_size,
        "max_size": variant.max_size,
        "initial_size": None,
    }
    return parse_config(base, env={})
