"""The configuration contract: errors that name their key, env overrides, the shipped files."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamlearn.config import (
    AppConfig,
    FeatureSpec,
    FieldType,
    load_config,
    parse_config,
    service_defaults,
)
from streamlearn.errors import ConfigError, StreamlearnError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fraud" / "config.yaml"


def pipeline(name: str = "fraud", **overrides: Any) -> dict[str, Any]:
    """A minimal valid pipeline section, with some keys replaced."""
    section: dict[str, Any] = {
        "name": name,
        "source": {"topic": "transactions"},
        "schema": {"features": {"amount": "float"}},
        "model": {"estimator": "sklearn.linear_model.SGDClassifier"},
    }
    section.update(overrides)
    return section


def config_error(data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env or {})
    return str(caught.value)


def error_lines(message: str) -> list[str]:
    """The per-key lines of a validation message (the first line is the heading)."""
    lines = message.splitlines()
    assert lines[0] == "invalid configuration:"
    return [line.strip() for line in lines[1:]]


# --- a valid configuration and its defaults --------------------------------------------------


def test_minimal_pipeline_gets_documented_defaults() -> None:
    cfg = parse_config({"pipelines": [pipeline()]}, env={})
    p = cfg.pipelines[0]
    assert p.source.group == "streamlearn-fraud"
    assert p.source.start == "earliest"
    assert p.dead_letter_topic == "transactions.dlq"
    assert (p.schema_.id, p.schema_.entity, p.schema_.timestamp) == ("event_id", "entity_id", "ts")
    assert p.schema_.target is None
    assert p.model.scale is True
    assert p.batching.min_size <= p.batching.max_size
    assert cfg.kafka.bootstrap == "localhost:9092"
    assert cfg.redis.url == "redis://localhost:6379/0"
    assert cfg.redis.prefix == "sl"
    assert cfg.metrics.port == 9100


def test_configured_group_and_dead_letter_topic_are_kept() -> None:
    section = pipeline(
        source={"topic": "t", "group": "mine"}, outputs={"dead_letter_topic": "bad-events"}
    )
    p = parse_config({"pipelines": [section]}, env={}).pipelines[0]
    assert p.source.group == "mine"
    assert p.dead_letter_topic == "bad-events"


def test_short_form_features_equal_the_long_form() -> None:
    short = {"amount": "float", "hour": "int", "foreign": "bool", "channel": "category"}
    long = {name: {"type": kind} for name, kind in short.items()}
    a = parse_config({"pipelines": [pipeline(schema={"features": short})]}, env={})
    b = parse_config({"pipelines": [pipeline(schema={"features": long})]}, env={})
    assert a == b
    features = a.pipelines[0].schema_.features
    assert features["channel"] == FeatureSpec(type=FieldType.CATEGORY, buckets=32)
    assert list(features) == list(short)  # schema order is the matrix's column order


def test_short_and_long_forms_mix() -> None:
    features = {"amount": "float", "channel": {"type": "category", "buckets": 4}}
    p = parse_config({"pipelines": [pipeline(schema={"features": features})]}, env={})
    specs = p.pipelines[0].schema_.features
    assert specs["amount"].type is FieldType.FLOAT
    assert specs["channel"].buckets == 4


def test_configuration_is_frozen() -> None:
    cfg = parse_config({"pipelines": [pipeline()]}, env={})
    with pytest.raises(ValidationError):
        cfg.kafka.bootstrap = "elsewhere:9092"


def test_pipeline_lookup_by_name_names_the_known_ones() -> None:
    cfg = parse_config({"pipelines": [pipeline("fraud"), pipeline("churn")]}, env={})
    assert cfg.pipeline("churn").name == "churn"
    with pytest.raises(ConfigError, match=r"no pipeline named 'recs'.*fraud, churn"):
        cfg.pipeline("recs")


# --- every error names the key and what was expected ------------------------------------------


CATEGORY_0 = {"c": {"type": "category", "buckets": 0}}
TINY_EVENTS = {"features": {"a": "float"}, "max_event_bytes": 1}
FIELD_TYPES = "'float', 'int', 'bool' or 'category'"


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        ({"batching": {"min_size": 0}}, "batching.min_size", "greater than or equal"),
        ({"batching": {"max_size": -1}}, "batching.max_size", "greater than or equal"),
        ({"batching": {"min_size": "many"}}, "batching.min_size", "valid integer"),
        ({"batching": {"latency_target_ms": 0}}, "batching.latency_target_ms", "greater than 0"),
        ({"source": {"topic": 5}}, "source.topic", "valid string"),
        ({"source": {"topic": "t", "start": "x"}}, "source.start", "'earliest' or 'latest'"),
        ({"schema": {"features": ["amount"]}}, "schema.features", "valid dictionary"),
        ({"schema": {"features": {"a": "double"}}}, "schema.features.a.type", FIELD_TYPES),
        ({"schema": {"features": CATEGORY_0}}, "schema.features.c.buckets", ">= 1"),
        ({"schema": TINY_EVENTS}, "schema.max_event_bytes", "greater than or equal to 64"),
        ({"model": {"estimator": "x", "threshold": 2}}, "model.threshold", "less than or equal"),
        ({"drift": {"detector": "magic"}}, "drift.detector", "'adwin'"),
        ({"name": "has space"}, "name", "pattern"),
    ],
)
def test_bad_value_names_key_and_expectation(
    overrides: dict[str, Any], key: str, expected: str
) -> None:
    lines = error_lines(config_error({"pipelines": [pipeline(**overrides)]}))
    assert len(lines) == 1
    assert lines[0].startswith(f"pipelines[0].{key}: ")
    assert expected.replace(">=", "greater than or equal to") in lines[0]
    assert ", got " in lines[0]  # says what it found, too


def test_min_size_above_max_size_names_the_batching_section() -> None:
    section = pipeline(batching={"min_size": 10, "max_size": 5})
    (line,) = error_lines(config_error({"pipelines": [section]}))
    assert line.startswith("pipelines[0].batching: ")
    assert "min_size (10) must be ≤ max_size (5)" in line


def test_initial_size_outside_the_bounds() -> None:
    section = pipeline(batching={"min_size": 2, "max_size": 8, "initial_size": 9})
    (line,) = error_lines(config_error({"pipelines": [section]}))
    assert line.startswith("pipelines[0].batching: initial_size must lie within")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"kafak": {}, "pipelines": [pipeline()]}, "kafak"),
        ({"pipelines": [pipeline(batching={"max_sise": 5})]}, "pipelines[0].batching.max_sise"),
        ({"pipelines": [pipeline(colour="blue")]}, "pipelines[0].colour"),
        ({"pipelines": [pipeline(), pipeline("b", sink={})]}, "pipelines[1].sink"),
        (
            {"pipelines": [pipeline(schema={"features": {"a": {"type": "int", "bucket": 2}}})]},
            "pipelines[0].schema.features.a.bucket",
        ),
    ],
)
def test_unknown_key_is_named_with_a_hint(data: dict[str, Any], key: str) -> None:
    (line,) = error_lines(config_error(data))
    assert line == f"{key}: unknown key (check its spelling and indentation)"


def test_missing_keys_are_all_listed() -> None:
    lines = error_lines(config_error({"pipelines": [{"name": "x", "source": {}}]}))
    assert lines == [
        "pipelines[0].source.topic: field required",
        "pipelines[0].schema: field required",
        "pipelines[0].model: field required",
    ]


def test_missing_pipelines() -> None:
    assert error_lines(config_error({})) == ["pipelines: field required"]


def test_no_pipelines() -> None:
    (line,) = error_lines(config_error({"pipelines": []}))
    assert line.startswith("pipelines: at least one pipeline is required")


def test_pipelines_not_a_list() -> None:
    (line,) = error_lines(config_error({"pipelines": 5}))
    assert line == "pipelines: expected a valid list, got 5"


def test_duplicate_pipeline_names() -> None:
    (line,) = error_lines(config_error({"pipelines": [pipeline("fraud"), pipeline("fraud")]}))
    assert line.startswith("pipelines: pipeline names must be unique")
    assert "['fraud', 'fraud']" in line


def test_empty_features() -> None:
    (line,) = error_lines(config_error({"pipelines": [pipeline(schema={"features": {}})]}))
    assert line.startswith("pipelines[0].schema.features: at least one feature field is required")


def test_second_pipeline_errors_carry_its_index() -> None:
    data = {"pipelines": [pipeline("a"), pipeline("b", batching={"min_size": 0})]}
    (line,) = error_lines(config_error(data))
    assert line.startswith("pipelines[1].batching.min_size: ")


def test_top_level_must_be_a_mapping() -> None:
    message = config_error([1, 2])
    assert message == "invalid configuration: expected a mapping at the top, got [1, 2]"


def test_config_error_is_a_streamlearn_error() -> None:
    # The CLI prints StreamlearnError messages instead of tracebacks.
    assert issubclass(ConfigError, StreamlearnError)


# --- files -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"configuration file not found: .*nope\.yaml"):
        load_config(path, env={})


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("pipelines: [\n  - name: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML"):
        load_config(path, env={})


def test_empty_file_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping at the top, got None"):
        load_config(path, env={})


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("pipelines: []  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"cannot read configuration file .*latin1\.yaml"):
        load_config(path, env={})


def test_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path, env={})


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE, env={})
    (fraud,) = cfg.pipelines
    assert fraud.name == "fraud"
    assert fraud.source.topic == "transactions"
    assert fraud.schema_.target == "is_fraud"
    assert list(fraud.schema_.features) == [
        "amount", "merchant_risk", "velocity_1h", "distance_km",
        "hour", "is_foreign", "channel", "mcc",
    ]  # fmt: skip
    assert fraud.schema_.features["channel"].buckets == 4


def test_example_config_is_the_packaged_fraud_task() -> None:
    packaged = importlib.resources.files("streamlearn.tasks").joinpath("fraud.yaml")
    # Both files must stay identical: the demo runs the packaged one, users copy the example.
    assert packaged.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")
    with importlib.resources.as_file(packaged) as path:
        assert load_config(path, env={}) == load_config(EXAMPLE, env={})


# --- environment overrides -------------------------------------------------------------------


def test_env_overrides_services() -> None:
    env = {
        "STREAMLEARN_KAFKA_BOOTSTRAP": "kafka:29092",
        "STREAMLEARN_REDIS_URL": "redis://cache:6379/3",
        "STREAMLEARN_METRICS_PORT": "9200",
    }
    cfg = load_config(EXAMPLE, env=env)
    assert cfg.kafka.bootstrap == "kafka:29092"
    assert cfg.redis.url == "redis://cache:6379/3"
    assert cfg.metrics.port == 9200


def test_env_override_keeps_the_rest_of_the_section() -> None:
    data = {"redis": {"url": "redis://file:1/0", "prefix": "acme"}, "pipelines": [pipeline()]}
    cfg = parse_config(data, env={"STREAMLEARN_REDIS_URL": "redis://env:2/0"})
    assert cfg.redis.url == "redis://env:2/0"
    assert cfg.redis.prefix == "acme"


def test_env_override_fills_a_null_section() -> None:
    cfg = parse_config(
        {"metrics": None, "pipelines": [pipeline()]}, {"STREAMLEARN_METRICS_PORT": "0"}
    )
    assert cfg.metrics.port == 0


def test_empty_env_value_does_not_override() -> None:
    data = {"kafka": {"bootstrap": "file:9092"}, "pipelines": [pipeline()]}
    cfg = parse_config(data, env={"STREAMLEARN_KAFKA_BOOTSTRAP": ""})
    assert cfg.kafka.bootstrap == "file:9092"


def test_bad_env_value_names_the_key() -> None:
    (line,) = error_lines(
        config_error({"pipelines": [pipeline()]}, env={"STREAMLEARN_METRICS_PORT": "ninety"})
    )
    assert line.startswith("metrics.port: expected a valid integer")


def test_load_config_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLEARN_KAFKA_BOOTSTRAP", "from-env:9092")
    assert load_config(EXAMPLE).kafka.bootstrap == "from-env:9092"


def test_no_env_means_the_file_wins() -> None:
    assert parse_config({"pipelines": [pipeline()]}).kafka.bootstrap == "localhost:9092"


def test_service_defaults_from_env() -> None:
    defaults = service_defaults(
        {"STREAMLEARN_KAFKA_BOOTSTRAP": "k:1", "STREAMLEARN_REDIS_PREFIX": "p"}
    )
    assert (defaults.kafka_bootstrap, defaults.redis_url, defaults.redis_prefix) == (
        "k:1",
        "redis://localhost:6379/0",
        "p",
    )


def test_app_config_round_trips_through_its_own_dump() -> None:
    cfg = load_config(EXAMPLE, env={})
    again = AppConfig.model_validate(cfg.model_dump(by_alias=True))
    assert again == cfg


# --- security: SASL, TLS and Redis credentials -------------------------------------------------

SASL = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_username": "svc-streamlearn",
    "sasl_password": "kafka-s3cret-pw",
}


def services(kafka: dict[str, Any] | None = None, redis: dict[str, Any] | None = None) -> Any:
    return {"kafka": kafka or {}, "redis": redis or {}, "pipelines": [pipeline()]}


def test_plaintext_is_the_default_and_passes_only_the_protocol() -> None:
    cfg = parse_config(services(), env={})
    assert cfg.kafka.client_options() == {"security_protocol": "PLAINTEXT"}
    assert cfg.redis.client_options() == {}


def test_sasl_ssl_settings_become_kafka_python_keywords(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN-----", encoding="utf-8")
    tls = {f"ssl_{n}file": str(p) for n, p in zip(("ca", "cert", "key"), files.values())}
    cfg = parse_config(services({**SASL, **tls, "ssl_check_hostname": False}), env={})
    assert cfg.kafka.client_options() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc-streamlearn",
        "sasl_plain_password": "kafka-s3cret-pw",
        "ssl_check_hostname": False,
        "ssl_cafile": str(files["ca"]),
        "ssl_certfile": str(files["cert"]),
        "ssl_keyfile": str(files["key"]),
    }


def test_sasl_plaintext_sends_no_tls_options() -> None:
    cfg = parse_config(services({**SASL, "security_protocol": "SASL_PLAINTEXT"}), env={})
    assert set(cfg.kafka.client_options()) == {
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    }


def test_security_settings_come_from_the_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN-----", encoding="utf-8")
    env = {
        "STREAMLEARN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMLEARN_KAFKA_SASL_MECHANISM": "PLAIN",
        "STREAMLEARN_KAFKA_SASL_USERNAME": "env-user",
        "STREAMLEARN_KAFKA_SASL_PASSWORD": "env-kafka-pw",
        "STREAMLEARN_KAFKA_SSL_CAFILE": str(ca),
        "STREAMLEARN_KAFKA_SSL_CHECK_HOSTNAME": "false",
        "STREAMLEARN_REDIS_URL": "rediss://cache:6380/0",
        "STREAMLEARN_REDIS_USERNAME": "alice",
        "STREAMLEARN_REDIS_PASSWORD": "env-redis-pw",
        "STREAMLEARN_REDIS_SSL_CA_CERTS": str(ca),
    }
    cfg = parse_config(services(), env=env)
    assert cfg.kafka.client_options() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "env-user",
        "sasl_plain_password": "env-kafka-pw",
        "ssl_check_hostname": False,
        "ssl_cafile": str(ca),
    }
    assert cfg.redis.client_options() == {
        "username": "alice",
        "password": "env-redis-pw",
        "ssl_ca_certs": str(ca),
    }


def test_tls_file_variables_override_the_file(tmp_path: Path) -> None:
    for name in ("cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x", encoding="utf-8")
    env = {
        "STREAMLEARN_KAFKA_SSL_CERTFILE": str(tmp_path / "cert.pem"),
        "STREAMLEARN_KAFKA_SSL_KEYFILE": str(tmp_path / "key.pem"),
    }
    cfg = parse_config(services({"security_protocol": "SSL"}), env=env)
    assert (cfg.kafka.ssl_certfile, cfg.kafka.ssl_keyfile) == tuple(env.values())


@pytest.mark.parametrize("missing", ["sasl_mechanism", "sasl_username", "sasl_password"])
def test_sasl_without_each_credential_names_it(missing: str) -> None:
    kafka = {k: v for k, v in SASL.items() if k != missing}
    (line,) = error_lines(config_error(services(kafka)))
    assert line == (
        f"kafka.{missing}: required when kafka.security_protocol is SASL_SSL "
        f"(or set STREAMLEARN_KAFKA_{missing.upper()})"
    )


def test_an_empty_sasl_password_counts_as_missing() -> None:
    (line,) = error_lines(config_error(services({**SASL, "sasl_password": ""})))
    assert line.startswith("kafka.sasl_password: required when")


def test_sasl_keys_without_a_sasl_protocol_are_refused() -> None:
    kafka = {**SASL, "security_protocol": "SSL"}
    lines = error_lines(config_error(services(kafka)))
    assert [line.split(":")[0] for line in lines] == [
        "kafka.sasl_mechanism",
        "kafka.sasl_username",
        "kafka.sasl_password",
    ]
    assert "only used with SASL, but kafka.security_protocol is SSL" in lines[0]


def test_tls_files_need_a_tls_protocol_and_must_exist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    (line,) = error_lines(config_error(services({"ssl_cafile": str(ca)})))
    assert line.startswith("kafka.ssl_cafile: only used with TLS, but kafka.security_protocol")
    absent = str(tmp_path / "absent.pem")
    (line,) = error_lines(
        config_error(services({"security_protocol": "SSL", "ssl_cafile": absent}))
    )
    assert line == f"kafka.ssl_cafile: no such file: {absent}"


@pytest.mark.parametrize(
    ("kafka", "key", "expected"),
    [
        ({"security_protocol": "TLS"}, "security_protocol", "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT'"),
        ({**SASL, "sasl_mechanism": "GSSAPI"}, "sasl_mechanism", "'SCRAM-SHA-512'"),
    ],
)
def test_unknown_protocol_or_mechanism_lists_the_choices(
    kafka: dict[str, Any], key: str, expected: str
) -> None:
    (line,) = error_lines(config_error(services(kafka)))
    assert line.startswith(f"kafka.{key}: expected ")
    assert expected in line


def test_a_bad_protocol_from_the_environment_names_the_variable() -> None:
    env = {"STREAMLEARN_KAFKA_SECURITY_PROTOCOL": "sasl"}
    (line,) = error_lines(config_error(services(), env=env))
    assert line.endswith("(from the environment variable STREAMLEARN_KAFKA_SECURITY_PROTOCOL)")


def test_redis_tls_ca_needs_a_rediss_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    (line,) = error_lines(config_error(services(redis={"ssl_ca_certs": str(ca)})))
    assert (
        line == "redis.ssl_ca_certs: only used with TLS: write redis.url as rediss://host:port/db"
    )
    cfg = parse_config(services(redis={"url": "rediss://c:6380/0", "ssl_ca_certs": str(ca)}))
    assert cfg.redis.client_options() == {"ssl_ca_certs": str(ca)}


def test_redis_url_scheme_is_checked_without_showing_the_password() -> None:
    (line,) = error_lines(config_error(services(redis={"url": "http://u:redis-pw@c:6379"})))
    assert line == (
        "redis.url: expected a URL starting with redis://, rediss:// (TLS) or unix://, "
        "got 'http://u:***@c:6379'"
    )


SECRETS = ("kafka-s3cret-pw", "redis-s3cret-pw", "url-s3cret-pw")


def secret_config() -> AppConfig:
    return parse_config(
        services(SASL | {"sasl_password": SECRETS[0]}, {"url": f"redis://a:{SECRETS[2]}@c/0"}),
        env={"STREAMLEARN_REDIS_PASSWORD": SECRETS[1]},
    )


def test_secrets_are_not_in_repr_str_or_a_json_dump() -> None:
    cfg = secret_config()
    shown = [repr(cfg), str(cfg), repr(cfg.kafka), repr(cfg.redis), cfg.model_dump_json()]
    for text in shown:
        for secret in SECRETS[:2]:
            assert secret not in text
    assert SECRETS[2] not in repr(cfg) + repr(cfg.redis)
    assert "redis://a:***@c/0" in repr(cfg.redis)
    # Kept, for the clients:
    assert cfg.kafka.client_options()["sasl_plain_password"] == SECRETS[0]
    assert cfg.redis.client_options()["password"] == SECRETS[1]


def test_secrets_survive_a_round_trip_through_the_dump() -> None:
    cfg = secret_config()
    assert AppConfig.model_validate(cfg.model_dump(by_alias=True)) == cfg


@pytest.mark.parametrize(
    "data",
    [
        services({**SASL, "sasl_password": 12345678}),  # not a string: not echoed either
        services(redis={"password": ["kafka-s3cret-pw"]}),
        {"redis": "redis://u:url-s3cret-pw@c:6379/0", "pipelines": [pipeline()]},
        services({**SASL, "bootstrap": 5}, {"url": "redis://u:url-s3cret-pw@c/0", "prefix": "!"}),
    ],
)
def test_errors_do_not_show_secrets(data: dict[str, Any]) -> None:
    message = config_error(data)
    for secret in (*SECRETS, "12345678"):
        assert secret not in message


def test_a_recommendation_setting_the_model_does_not_know_is_refused_by_name() -> None:
    from streamlearn.config_recommendation import RecommendationConfig
    from streamlearn.errors import ConfigError
    from streamlearn.tasks.recommendation import recommender_settings

    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['factorz'\]"):
        recommender_settings(RecommendationConfig(params={"factorz": 3}), "shop")
    with pytest.raises(ConfigError, match="factors must be at least 1"):
        recommender_settings(RecommendationConfig(params={"factors": 0}), "shop")
