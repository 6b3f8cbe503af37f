"""Start-up that tells the truth: security settings reach every client, quiet probing, early errors.

The kafka-python classes are replaced by recorders here only to check which keywords each
connector passes them; Kafka's behaviour is tested against a real broker elsewhere.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from kafka import TopicPartition
from typer.testing import CliRunner

import connectors.kafka as kafka_module
import connectors.kafka_admin as admin_module
import connectors.kafka_sink as sink_module
import streamlearn.app as app_module
from connectors.embedded import free_port
from connectors.kafka_logging import ConnectionNoise, quiet_kafka, tame_kafka_logging
from streamlearn import cli
from streamlearn.app import App
from streamlearn.config import AppConfig, parse_config
from streamlearn.errors import ModelError, ServiceUnavailable

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = "broker:9093"
SECURITY = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_plain_username": "svc",
    "sasl_plain_password": "kafka-pw",
    "ssl_check_hostname": True,
}


class Clients:
    """Stands in for kafka-python's client classes; records the keywords of each one built."""

    def __init__(self) -> None:
        self.built: list[tuple[str, dict[str, Any]]] = []

    def factory(self, kind: str) -> Any:
        def build(**kwargs: Any) -> mock.MagicMock:
            self.built.append((kind, kwargs))
            client = mock.MagicMock(name=kind)
            client.create_topics.return_value = {"topics": []}
            client.list_group_offsets.return_value = {}
            client.end_offsets.return_value = {}
            client.highwater.return_value = 7
            client.partitions_for_topic.return_value = None
            return client

        return build


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Clients:
    recorded = Clients()
    monkeypatch.setattr(admin_module, "KafkaAdminClient", recorded.factory("admin"))
    monkeypatch.setattr(admin_module, "KafkaConsumer", recorded.factory("reader"))
    monkeypatch.setattr(kafka_module, "KafkaConsumer", recorded.factory("consumer"))
    monkeypatch.setattr(sink_module, "KafkaProducer", recorded.factory("producer"))
    return recorded


TP = TopicPartition("t", 0)
CALLS = {
    "wait_for_broker": lambda: admin_module.wait_for_broker(BOOTSTRAP, 1, security=SECURITY),
    "ensure_topics": lambda: admin_module.ensure_topics(BOOTSTRAP, ["t"], security=SECURITY),
    "committed_offsets": lambda: admin_module.committed_offsets(BOOTSTRAP, "g", security=SECURITY),
    "end_offsets": lambda: admin_module.end_offsets(BOOTSTRAP, "t", security=SECURITY),
    "read_all": lambda: admin_module.read_all(BOOTSTRAP, "t", security=SECURITY),
    "fresh_high_watermarks": lambda: admin_module.fresh_high_watermarks(
        BOOTSTRAP, [TP], security=SECURITY
    ),
    "KafkaSource": lambda: kafka_module.KafkaSource(BOOTSTRAP, ["t"], "g", security=SECURITY),
    "KafkaSink": lambda: sink_module.KafkaSink(BOOTSTRAP, security=SECURITY),
}


@pytest.mark.parametrize("name", CALLS)
def test_every_kafka_client_gets_the_security_settings(clients: Clients, name: str) -> None:
    CALLS[name]()
    assert clients.built, f"{name} built no kafka-python client"
    for kind, kwargs in clients.built:
        assert kwargs["bootstrap_servers"] == BOOTSTRAP
        assert {k: kwargs.get(k) for k in SECURITY} == SECURITY, kind


def test_without_security_settings_clients_get_kafka_python_defaults(clients: Clients) -> None:
    kafka_module.KafkaSource(BOOTSTRAP, ["t"], "g")
    sink_module.KafkaSink(BOOTSTRAP)
    admin_module.wait_for_broker(BOOTSTRAP, 1)
    assert all("security_protocol" not in kwargs for _, kwargs in clients.built)


def test_a_paused_source_reads_lag_with_the_security_settings(clients: Clients) -> None:
    source = kafka_module.KafkaSource(BOOTSTRAP, ["t"], "g", security=SECURITY)
    source.consumer.assignment.return_value = {TP}
    source.consumer.highwater.return_value = None
    source.consumer.position.return_value = 3
    source.pause_all()
    assert source.lag() == {0: 4}  # the short-lived reader's high watermark, 7
    kind, kwargs = clients.built[-1]
    assert kind == "reader"
    assert kwargs["sasl_plain_password"] == "kafka-pw"


# --- the app hands the configured settings to every connector ---------------------------------


def secured_config(**kafka: Any) -> AppConfig:
    return parse_config(
        {
            "kafka": {
                "bootstrap": BOOTSTRAP,
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "svc",
                "sasl_password": "kafka-pw",
                **kafka,
            },
            "redis": {"url": "redis://cache:6379/0", "username": "alice", "password": "redis-pw"},
            "metrics": {"port": 0},
            "pipelines": [
                {
                    "name": "fraud",
                    "source": {"topic": "transactions"},
                    "schema": {"target": "y", "features": {"x": "float"}},
                    "model": {"estimator": "river.linear_model.LogisticRegression"},
                }
            ],
        },
        env={},
    )


def recorder(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]], name: str) -> Any:
    def record(*args: Any, **kwargs: Any) -> mock.MagicMock:
        calls.append((name, args, kwargs))
        return mock.MagicMock(name=name)

    return record


def test_the_app_passes_the_configured_security_to_every_connector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    for name in ("connect", "wait_for_broker", "ensure_topics", "KafkaSource", "KafkaSink"):
        monkeypatch.setattr(app_module, name, recorder(calls, name))
    config = secured_config()
    app = App(config)
    app._connect()
    app._source(config.pipelines[0])
    app._outputs(config.pipelines[0], mock.MagicMock())
    by_name = {name: kwargs for name, _, kwargs in calls}
    assert set(by_name) == {
        "connect",
        "wait_for_broker",
        "ensure_topics",
        "KafkaSource",
        "KafkaSink",
    }
    expected = config.kafka.client_options()
    assert expected["sasl_plain_password"] == "kafka-pw"
    for name in ("wait_for_broker", "ensure_topics", "KafkaSource", "KafkaSink"):
        assert by_name[name]["security"] == expected, name
    assert by_name["connect"] == {
        "timeout_s": 60.0,
        "username": "alice",
        "password": "redis-pw",
    }


def test_a_bad_model_is_reported_before_any_service_is_contacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def contacted(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a service was contacted before the models were built")

    for name in ("connect", "wait_for_broker", "ensure_topics"):
        monkeypatch.setattr(app_module, name, contacted)
    config = secured_config()
    pipeline = config.pipelines[0].model_copy(
        update={"model": config.pipelines[0].model.model_copy(update={"params": {"nope": 1}})}
    )
    app = App(config.model_copy(update={"pipelines": [pipeline]}))
    with pytest.raises(ModelError):
        app.run()


# --- through the CLI, as a user runs it ------------------------------------------------------


def run_cli(tmp_path: Path, model: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``streamlearn run`` with nothing listening at the broker's or Redis's address."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""\
kafka: {{bootstrap: "127.0.0.1:{free_port()}", connect_timeout_s: 60}}
redis: {{url: "redis://127.0.0.1:{free_port()}/0", connect_timeout_s: 60}}
metrics: {{port: 0}}
pipelines:
  - name: fraud
    source: {{topic: transactions}}
    schema: {{target: y, features: {{amount: float}}}}
    model: {model}
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streamlearn", "run", str(config)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT), "COLUMNS": "80"},
        cwd=ROOT,
        timeout=90,
        check=False,
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("{estimator: river.linear_model.NoSuchModel}", "river.linear_model.NoSuchModel"),
        ("{estimator: river.linear_model.LogisticRegression, params: {nope: 1}}", "nope"),
    ],
)
def test_run_reports_a_model_error_at_once_with_the_services_down(
    tmp_path: Path, model: str, expected: str
) -> None:
    result, took = run_cli(tmp_path, model)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "unreachable" not in result.stderr
    assert took < 30  # the services' retry budget alone is 60 s each


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["run", str(tmp_path / "c.yaml"), "--log-level", "LOUD"])
    assert result.exit_code == 2
    assert "unknown log level 'LOUD'" in result.output


# --- kafka-python's logging ------------------------------------------------------------------


def test_probing_a_broker_is_silent_and_restores_the_level() -> None:
    logger = logging.getLogger("kafka")
    before = logger.level
    with quiet_kafka():
        with quiet_kafka():  # nested, e.g. a probe inside a start-up step
            assert not logging.getLogger("kafka.net.manager").isEnabledFor(logging.CRITICAL)
        assert not logger.isEnabledFor(logging.CRITICAL)
    assert logger.level == before


def test_wait_for_broker_on_a_closed_port_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ServiceUnavailable, match=r"kafka\.bootstrap"):
        admin_module.wait_for_broker(f"127.0.0.1:{free_port()}", timeout_s=0.5)
    assert [r for r in caplog.records if r.name.startswith("kafka")] == []


def test_taming_kafka_logging_keeps_errors_and_filters_once() -> None:
    handler = logging.StreamHandler()
    tame_kafka_logging([handler])
    tame_kafka_logging([handler])
    assert logging.getLogger("kafka").level == logging.ERROR
    assert sum(isinstance(f, ConnectionNoise) for f in handler.filters) == 1


def test_connection_noise_passes_other_loggers() -> None:
    noise = ConnectionNoise(clock=lambda: 0.0)
    refused = "Connection failed: KafkaConnectionError: 111 ECONNREFUSED"
    ours = logging.LogRecord("connectors.kafka", logging.WARNING, "", 0, refused, None, None)
    assert all(noise.filter(ours) for _ in range(3))


# --- lag errors are reported, once a minute ----------------------------------------------------


def test_lag_errors_are_logged_at_most_once_a_minute(
    clients: Clients, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    monkeypatch.setattr(kafka_module, "time", SimpleNamespace(monotonic=lambda: now[0]))

    def unavailable(*args: Any, **kwargs: Any) -> dict[Any, int]:
        raise ServiceUnavailable("no fetch answer from Kafka within 2.0 s")

    monkeypatch.setattr(kafka_module, "fresh_high_watermarks", unavailable)
    source = kafka_module.KafkaSource(BOOTSTRAP, ["t"], "g")
    source.consumer.assignment.return_value = {TP}
    source.consumer.highwater.return_value = 10
    source.consumer.position.return_value = 4
    source.pause_all()
    caplog.set_level(logging.WARNING, logger="connectors.kafka")
    lags = [source.lag() for _ in range(3)]
    now[0] += 61
    lags.append(source.lag())
    assert lags == [{0: 6}] * 4  # still reported, from the last known high watermark
    warnings = [r.getMessage() for r in caplog.records if r.name == "connectors.kafka"]
    assert len(warnings) == 2
    assert "no fetch answer from Kafka within 2.0 s" in warnings[0]
    assert BOOTSTRAP in warnings[0]
