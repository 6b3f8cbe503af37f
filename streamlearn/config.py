"""The configuration file: its shape, its validation and its environment overrides.

This is the one place that reads ``STREAMLEARN_*`` environment variables. Every validation
error names the offending key and says what was expected.

Examples
--------
>>> cfg = parse_config({
...     "pipelines": [{
...         "name": "fraud",
...         "source": {"topic": "transactions"},
...         "schema": {"id": "event_id", "entity": "entity_id", "timestamp": "ts",
...                    "target": "is_fraud",
...                    "features": {"amount": "float", "channel": "category"}},
...         "model": {"estimator": "river.linear_model.LogisticRegression"},
...     }]
... }, env={"STREAMLEARN_KAFKA_BOOTSTRAP": "kafka:9092"})
>>> cfg.kafka.bootstrap
'kafka:9092'
>>> cfg.pipelines[0].source.group
'streamlearn-fraud'
>>> cfg.pipelines[0].dead_letter_topic
'transactions.dlq'
>>> parse_config({"pipelines": [{"name": "x", "source": {}}]})
Traceback (most recent call last):
...
streamlearn.errors.ConfigError: invalid configuration:
  pipelines[0].source.topic: field required
  pipelines[0].schema: field required
  pipelines[0].model: field required
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from streamlearn.config_aggregates import (
    DEFAULT_ALLOWED_LATENESS_S,
    AggregateSpec,
    check_aggregate_fields,
)
from streamlearn.config_errors import describe
from streamlearn.config_labels import LabelsConfig
from streamlearn.config_recommendation import RecommendationConfig
from streamlearn.config_services import NAME_PATTERN, KafkaConfig, RedisConfig, mask_urls
from streamlearn.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldType(StrEnum):
    """The type of one feature field of an event."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    CATEGORY = "category"


class FeatureSpec(_Strict):
    """One feature field: its type and, for categories, how many hash buckets encode it."""

    type: FieldType
    buckets: int = Field(default=32, ge=1, le=1 << 20)


class SchemaConfig(_Strict):
    """Where the id, entity, time, target and features sit in each JSON event."""

    id: str = "event_id"
    entity: str = "entity_id"
    timestamp: str = "ts"
    target: str | None = None
    features: dict[str, FeatureSpec]
    max_event_bytes: int = Field(default=64 * 1024, ge=64)
    # Larger numbers are unit or encoding mistakes, and would overflow the running scaler.
    max_abs_value: float = Field(default=1e12, gt=0)
    # Per-entity streaming features, each one more numeric feature (streamlearn.aggregates).
    aggregates: dict[str, AggregateSpec] = Field(default_factory=dict)
    allowed_lateness_s: float = Field(default=DEFAULT_ALLOWED_LATENESS_S, ge=0)

    @field_validator("features", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        # `amount: float` is shorthand for `amount: {type: float}`.
        if isinstance(value, Mapping):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("features")
    @classmethod
    def _not_empty(cls, value: dict[str, FeatureSpec]) -> dict[str, FeatureSpec]:
        if not value:
            raise ValueError("at least one feature field is required")
        return value

    @model_validator(mode="after")
    def _aggregates_fit(self) -> SchemaConfig:
        check_aggregate_fields(self.aggregates, {k: v.type.value for k, v in self.features.items()})
        return self


class SourceConfig(_Strict):
    """The Kafka topic a pipeline reads and the consumer group it reads it in."""

    topic: str
    group: str | None = None
    start: Literal["earliest", "latest"] = "earliest"
    poll_max_records: int = Field(default=4096, ge=1)


class ModelConfig(_Strict):
    """The estimator, by dotted name, with its parameters.

    ``estimator`` is a river estimator or a scikit-learn estimator with ``partial_fit``.
    A parameter value written as ``{"class": "dotted.Name", "params": {...}}`` is built too,
    so a river optimizer can be configured. ``scale`` puts an online standard scaler in front.
    """

    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)
    scale: bool = True
    task: Literal["binary"] = "binary"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class BatchingConfig(_Strict):
    """Mini-batch bounds and the latency the batcher aims for."""

    latency_target_ms: float = Field(default=100.0, gt=0)
    min_size: int = Field(default=1, ge=1)
    max_size: int = Field(default=2048, ge=1)
    max_wait_ms: float = Field(default=50.0, ge=0)
    initial_size: int | None = Field(default=None, ge=1)
    max_buffered_events: int = Field(default=100_000, ge=1)
    max_buffered_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    drift_floor: int | None = Field(default=None, ge=1)
    drift_regrowth: float = Field(default=1.5, gt=1.0)
    latency_margin_ms: float | None = Field(default=None, ge=0)
    cost_forgetting: float = Field(default=0.9, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> BatchingConfig:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must be ≤ max_size ({self.max_size})")
        if self.max_buffered_events < self.max_size:
            raise ValueError(
                f"max_buffered_events ({self.max_buffered_events}) must be ≥ max_size "
                f"({self.max_size}), or a full batch could never be buffered"
            )
        if self.initial_size is not None and not (
            self.min_size <= self.initial_size <= self.max_size
        ):
            raise ValueError("initial_size must lie within [min_size, max_size]")
        return self


class DriftConfig(_Strict):
    """The detector that watches the model's prequential error stream."""

    detector: Literal["adwin", "page_hinkley", "kswin", "none"] = "adwin"
    params: dict[str, Any] = Field(default_factory=dict)
    grace_events: int = Field(default=1000, ge=0)
    # What the model does on drift: nothing more (the batcher still shrinks), start afresh,
    # or train a fresh challenger beside it that replaces it if it scores better.
    action: Literal["keep", "reset", "challenger"] = "keep"
    challenger_events: int = Field(default=5000, ge=1)
    challenger_warmup: int = Field(default=1000, ge=0)


class CheckpointConfig(_Strict):
    """How often the model and the offsets it learned up to are saved to Redis.

    Offsets are committed to the consumer group only after a checkpoint covering them is
    saved, so ``interval_s`` is also how much is replayed (re-scored, not re-learned) after a
    crash. ``keep`` versions are kept for rollback. ``lock_ttl_s`` is the lease of the lock that
    refuses a second replica of the pipeline: a restart after a crash waits at most this long.
    """

    enabled: bool = True
    interval_s: float = Field(default=10.0, ge=0)
    keep: int = Field(default=5, ge=1, le=1000)
    lock_ttl_s: float = Field(default=10.0, ge=1.0)


class RolesConfig(_Strict):
    """Scale-out (``streamlearn run --role scorer|learner``): how scorers and the learner meet.

    Scorers send what each batch teaches to ``learn_topic`` (default
    ``streamlearn-{pipeline}-learn``); the learner publishes its model to Redis at most every
    ``publish_interval_ms``, keeping the last ``keep_versions``; scorers look for a newer one
    before a batch at most every ``check_interval_ms``.
    """

    learn_topic: str | None = None
    publish_interval_ms: int = Field(default=250, ge=10)
    check_interval_ms: int = Field(default=50, ge=1)
    keep_versions: int = Field(default=5, ge=2, le=1000)


CHECKPOINT_KEY_ENV = "STREAMLEARN_CHECKPOINT_KEY"


def checkpoint_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The secret that signs checkpoints (``STREAMLEARN_CHECKPOINT_KEY``), if set.

    >>> checkpoint_key({"STREAMLEARN_CHECKPOINT_KEY": "s3cret"}), checkpoint_key({})
    (b's3cret', None)
    """
    value = (os.environ if env is None else env).get(CHECKPOINT_KEY_ENV)
    return value.encode() if value else None


class OutputsConfig(_Strict):
    """Where predictions and rejected events go."""

    prediction_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    # Write each prediction's top-3 reasons (models that support it: linear ones).
    reasons: bool = True
    predictions_topic: str | None = None
    dead_letter_topic: str | None = None


TASK_NAMES = ("classification", "recommendation")
"""The values a pipeline's ``task`` may take."""


class PipelineCommon(_Strict):
    """What every pipeline has, whatever its task: a name, a source, batching, outputs, ..."""

    name: str = Field(pattern=NAME_PATTERN)
    task: str
    source: SourceConfig
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    labels: LabelsConfig | None = None
    roles: RolesConfig = Field(default_factory=RolesConfig)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("task", mode="before")
    @classmethod
    def _known_task(cls, value: Any) -> Any:
        if value not in TASK_NAMES:
            raise ValueError(f"expected one of {', '.join(TASK_NAMES)}, got {value!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_group(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("source"), Mapping):
            source = dict(data["source"])
            source.setdefault("group", f"streamlearn-{data.get('name', 'pipeline')}")
            return {**data, "source": source}
        return data

    @property
    def learn_topic(self) -> str:
        """Where scorers send the learner what to learn: configured, else a name of its own."""
        return self.roles.learn_topic or f"streamlearn-{self.name}-learn"

    @property
    def dead_letter_topic(self) -> str:
        """The dead-letter topic: configured, else ``{topic}.dlq``."""
        return self.outputs.dead_letter_topic or f"{self.source.topic}.dlq"


class PipelineConfig(PipelineCommon):
    """A classification pipeline (fraud, retention): one stream, one schema, one model."""

    task: Literal["classification"] = "classification"
    schema_: SchemaConfig = Field(alias="schema")
    model: ModelConfig

    @model_validator(mode="after")
    def _one_source_of_labels(self) -> PipelineConfig:
        if self.labels is not None:
            if self.schema_.target is not None:
                raise ValueError(
                    "schema.target and labels are both set: with a labels topic the target "
                    "comes from the label messages; remove schema.target"
                )
            if self.labels.topic == self.source.topic:
                raise ValueError("labels.topic must differ from source.topic")
        return self


class RecommendationPipelineConfig(PipelineCommon):
    """A recommendation pipeline: interactions in, each user's top-K items out."""

    task: Literal["recommendation"]
    recommendation: RecommendationConfig = Field(default_factory=RecommendationConfig)

    @model_validator(mode="after")
    def _no_labels(self) -> RecommendationPipelineConfig:
        if self.labels is not None:
            raise ValueError(
                "labels is not used by a recommendation pipeline: it learns from the "
                "interactions themselves; remove the labels block"
            )
        if self.drift.action != "keep":
            raise ValueError(
                f"drift.action {self.drift.action!r} is not built for recommendation pipelines "
                "(only 'keep': the batcher still shrinks on drift, and the model keeps learning)"
            )
        return self


def _task_of(data: Any) -> str:
    """Which pipeline class a configuration mapping is (``classification`` when unsaid)."""
    task = data.get("task", "classification") if isinstance(data, Mapping) else data.task
    return task if task in TASK_NAMES else "classification"


AnyPipeline = Annotated[
    Annotated[PipelineConfig, Tag("classification")]
    | Annotated[RecommendationPipelineConfig, Tag("recommendation")],
    Discriminator(_task_of),
]
"""A pipeline of any task, told apart by its ``task`` key."""


class MetricsConfig(_Strict):
    """Where ``/metrics``, ``/healthz`` and ``/readyz`` are served (port 0 disables)."""

    host: str = "0.0.0.0"
    port: int = Field(default=9100, ge=0, le=65535)


class HealthConfig(_Strict):
    """When ``/readyz`` and ``/healthz`` stop answering 200.

    Not ready once a batch has been in hand for ``stall_s`` (outputs or model stalled, even
    without an error); not live once input has waited ``liveness_timeout_s`` without a batch
    finishing, or once a pipeline failed.
    """

    stall_s: float = Field(default=5.0, gt=0)
    liveness_timeout_s: float = Field(default=60.0, gt=0)


class AppConfig(_Strict):
    """A whole configuration file."""

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    pipelines: list[AnyPipeline]

    @field_validator("pipelines")
    @classmethod
    def _unique_names(cls, value: list[PipelineCommon]) -> list[PipelineCommon]:
        if not value:
            raise ValueError("at least one pipeline is required")
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline names must be unique, got {names}")
        return value

    def pipeline(self, name: str) -> PipelineConfig | RecommendationPipelineConfig:
        """Return the pipeline called ``name`` or raise :class:`ConfigError`."""
        for p in self.pipelines:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.pipelines)
        raise ConfigError(f"no pipeline named {name!r}; the configuration has: {known}")


# Environment variable -> (section, key). The one place the environment is read.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "STREAMLEARN_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "STREAMLEARN_KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "STREAMLEARN_KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "STREAMLEARN_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "STREAMLEARN_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "STREAMLEARN_KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "STREAMLEARN_KAFKA_SSL_CERTFILE": ("kafka", "ssl_certfile"),
    "STREAMLEARN_KAFKA_SSL_KEYFILE": ("kafka", "ssl_keyfile"),
    "STREAMLEARN_KAFKA_SSL_CHECK_HOSTNAME": ("kafka", "ssl_check_hostname"),
    "STREAMLEARN_REDIS_URL": ("redis", "url"),
    "STREAMLEARN_REDIS_USERNAME": ("redis", "username"),
    "STREAMLEARN_REDIS_PASSWORD": ("redis", "password"),
    "STREAMLEARN_REDIS_SSL_CA_CERTS": ("redis", "ssl_ca_certs"),
    "STREAMLEARN_REDIS_PREFIX": ("redis", "prefix"),
    "STREAMLEARN_METRICS_PORT": ("metrics", "port"),
    "STREAMLEARN_METRICS_HOST": ("metrics", "host"),
}


class ServiceDefaults(BaseModel):
    """Where the services are when no configuration file is given (``generate``, ``query``)."""

    kafka_bootstrap: str = "localhost:9092"
    redis_url: str = "redis://localhost:6379/0"
    redis_prefix: str = "sl"


def service_defaults(env: Mapping[str, str] | None = None) -> ServiceDefaults:
    """Service addresses from the environment, else the defaults.

    >>> service_defaults({"STREAMLEARN_REDIS_URL": "redis://r:6379/1"}).redis_url
    'redis://r:6379/1'
    """
    env = os.environ if env is None else env
    defaults = ServiceDefaults()
    return ServiceDefaults(
        kafka_bootstrap=env.get("STREAMLEARN_KAFKA_BOOTSTRAP") or defaults.kafka_bootstrap,
        redis_url=env.get("STREAMLEARN_REDIS_URL") or defaults.redis_url,
        redis_prefix=env.get("STREAMLEARN_REDIS_PREFIX") or defaults.redis_prefix,
    )


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> AppConfig:
    """Validate a configuration mapping, applying environment overrides from ``env``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid configuration: expected a mapping at the top, got {data!r}")
    merged: dict[str, Any] = dict(data)
    overridden: dict[str, str] = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        if env and env.get(var):
            merged[section] = {**(merged.get(section) or {}), key: env[var]}
            overridden[f"{section}.{key}"] = var
    try:
        return AppConfig.model_validate(merged)
    except ValidationError as exc:
        # A value quoted back may be a URL carrying a password (e.g. a whole section as one).
        raise ConfigError(mask_urls(describe(exc, overridden))) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate a YAML configuration file; ``env`` defaults to ``os.environ``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, os.environ if env is None else env)
