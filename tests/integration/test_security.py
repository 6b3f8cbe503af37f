"""Credentials on a real Redis (password, ACL users), and start-up errors that tell the truth.

The Redis here is a real ``redis-server`` started with ``--requirepass`` and ACL users; the
``streamlearn run`` tests are subprocesses, as a user runs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
from pydantic import SecretStr

from connectors.embedded import EmbeddedRedis, free_port
from connectors.kafka import KafkaSink, ensure_topics
from connectors.redis_store import PredictionColumns, PredictionStore, connect
from streamlearn.app import App
from streamlearn.config import parse_config
from streamlearn.errors import CredentialsRefused
from streamlearn.generators.fraud import FraudGenerator
from tests.integration.settings import fraud_settings

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "adm1n-pw-7f3"
ALICE_PASSWORD = "al1ce-pw-91c"
WRONG_PASSWORD = "hunter2-wrong-5e8"

PIPELINE = {
    "name": "fraud",
    "source": {"topic": "transactions"},
    "schema": {"target": "is_fraud", "features": {"amount": "float"}},
    "model": {"estimator": "river.linear_model.LogisticRegression"},
}


class SecuredRedis(EmbeddedRedis):
    """A ``redis-server`` that wants a password, with ACL users alice (all) and bob (nothing)."""

    def _command(self, port: int, workdir: Path) -> list[str]:
        return [
            *super()._command(port, workdir),
            *("--requirepass", ADMIN_PASSWORD),
            *("--user", "alice", "on", f">{ALICE_PASSWORD}", "~*", "&*", "+@all"),
            *("--user", "bob", "on", ">bob-pw", "~*", "-@all"),
        ]

    def _probe(self) -> None:
        client = redis.Redis(
            port=self.port, password=ADMIN_PASSWORD, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            client.ping()
        finally:
            client.close()

    def url_for(self, userinfo: str = "") -> str:
        return f"redis://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredRedis]:
    with SecuredRedis() as server:
        yield server


def round_trip(client: redis.Redis) -> dict[str, str] | None:
    """Write one prediction through the store and read it back."""
    store = PredictionStore(client, f"t{uuid.uuid4().hex[:6]}", "fraud", ttl_s=60)
    store.write(
        PredictionColumns(
            entity_ids=["card-1"],
            event_ids=["e-1"],
            timestamps_ms=np.array([1000], dtype=np.int64),
            scores=np.array([0.75]),
            labels=np.array([True]),
            model_version=3,
            scored_at_ms=5,
        )
    )
    return store.read("card-1")


def refused(url: str, **options: str) -> str:
    """Connect with a 60 s retry budget; the refusal must come at once. Returns the message."""
    started = time.monotonic()
    with pytest.raises(CredentialsRefused) as caught:
        connect(url, timeout_s=60, **options)
    assert time.monotonic() - started < 5
    return str(caught.value)


# --- the right credentials work end to end ---------------------------------------------------


def test_password_in_the_url_works(secured: SecuredRedis) -> None:
    client = connect(secured.url_for(f":{ADMIN_PASSWORD}"), timeout_s=5)
    assert round_trip(client) == {
        "score": "0.75",
        "label": "1",
        "model_version": "3",
        "ts": "1000",
        "event_id": "e-1",
        "scored_at": "5",
    }


def test_acl_user_in_the_url_works(secured: SecuredRedis) -> None:
    client = connect(secured.url_for(f"alice:{ALICE_PASSWORD}"), timeout_s=5)
    assert client.acl_whoami() == "alice"
    assert round_trip(client) is not None


def test_username_and_password_from_the_environment_reach_the_client(
    secured: SecuredRedis,
) -> None:
    # The way a container passes them: the URL without secrets, the secrets in env vars.
    env = {
        "STREAMLEARN_REDIS_URL": secured.url_for(),
        "STREAMLEARN_REDIS_USERNAME": "alice",
        "STREAMLEARN_REDIS_PASSWORD": ALICE_PASSWORD,
    }
    settings = parse_config({"pipelines": [PIPELINE]}, env=env).redis
    client = connect(settings.url, timeout_s=5, **settings.client_options())
    assert client.acl_whoami() == "alice"
    assert round_trip(client) is not None


def test_explicit_password_wins_over_the_one_in_the_url(secured: SecuredRedis) -> None:
    client = connect(secured.url_for(f"alice:{WRONG_PASSWORD}"), 5, password=ALICE_PASSWORD)
    assert client.acl_whoami() == "alice"


# --- the wrong ones fail at once, saying what to check, showing no secret ----------------------


def test_wrong_password_fails_at_once(secured: SecuredRedis) -> None:
    message = refused(secured.url_for(f":{WRONG_PASSWORD}"))
    assert message.startswith(
        f"Redis at redis://:***@127.0.0.1:{secured.port}/0 refused the credentials ("
    )
    assert "STREAMLEARN_REDIS_PASSWORD" in message
    assert WRONG_PASSWORD not in message


def test_wrong_password_of_an_acl_user_fails_at_once(secured: SecuredRedis) -> None:
    message = refused(secured.url_for("alice"), password=WRONG_PASSWORD)
    assert message.startswith(f"Redis at redis://alice@127.0.0.1:{secured.port}/0 refused")
    assert WRONG_PASSWORD not in message


def test_unknown_user_fails_at_once(secured: SecuredRedis) -> None:
    message = refused(secured.url_for(f"mallory:{ALICE_PASSWORD}"))
    assert "redis://mallory:***@" in message
    assert ALICE_PASSWORD not in message


def test_no_password_fails_at_once_and_says_one_is_needed(secured: SecuredRedis) -> None:
    assert "asks for a password" in refused(secured.url_for())


def test_user_without_permissions_fails_at_once(secured: SecuredRedis) -> None:
    assert "NoPermissionError" in refused(secured.url_for("bob:bob-pw"))


# --- TLS: rediss:// with the CA that signed the server's certificate -----------------------


class TlsRedis(SecuredRedis):
    """The secured server, speaking TLS only, with a certificate for 127.0.0.1 signed by a CA."""

    def __init__(self, certs: Path) -> None:
        super().__init__()
        self.certs = certs

    def _command(self, port: int, workdir: Path) -> list[str]:
        return [
            *super()._command(port, workdir),
            *("--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"),
            *("--tls-cert-file", str(self.certs / "server.pem")),
            *("--tls-key-file", str(self.certs / "server.key")),
            *("--tls-ca-cert-file", str(self.certs / "ca.pem")),
        ]

    def _probe(self) -> None:
        client = redis.Redis.from_url(
            self.url_for(f":{ADMIN_PASSWORD}"), ssl_ca_certs=str(self.certs / "ca.pem")
        )
        try:
            client.ping()
        finally:
            client.close()

    def url_for(self, userinfo: str = "") -> str:
        return super().url_for(userinfo).replace("redis://", "rediss://")


def make_certificates(where: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 it signed, made with the openssl CLI."""
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    new_key = "-newkey rsa:2048 -nodes -days 1"
    for command in (
        f"req -x509 {new_key} -subj /CN=test-ca -keyout ca.key -out ca.pem",
        f"req {new_key} -subj /CN=127.0.0.1 -keyout server.key -out server.csr",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
        "-extfile san.cnf -out server.pem",
    ):
        subprocess.run(["openssl", *command.split()], cwd=where, check=True, capture_output=True)
    return where


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    with TlsRedis(make_certificates(tmp_path_factory.mktemp("certs"))) as server:
        yield server


def test_rediss_with_the_ca_works_end_to_end(tls: TlsRedis) -> None:
    settings = parse_config(
        {
            "redis": {"url": tls.url_for("alice"), "ssl_ca_certs": str(tls.certs / "ca.pem")},
            "pipelines": [PIPELINE],
        },
        env={"STREAMLEARN_REDIS_PASSWORD": ALICE_PASSWORD},
    ).redis
    client = connect(settings.url, timeout_s=5, **settings.client_options())
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert client.acl_whoami() == "alice"
    assert round_trip(client) is not None


def test_an_untrusted_certificate_fails_at_once(tls: TlsRedis) -> None:
    message = refused(tls.url_for(f"alice:{ALICE_PASSWORD}"))  # no CA: the system's trust
    assert message.startswith(f"Redis at rediss://alice:***@127.0.0.1:{tls.port}/0 presented")
    assert "redis.ssl_ca_certs" in message
    assert ALICE_PASSWORD not in message


# --- through `streamlearn run`, as a user sees it ----------------------------------------------


def run_cli(
    tmp_path: Path, config: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m streamlearn run CONFIG`` in a clean environment; returns it and its duration."""
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streamlearn", "run", str(path)],
        capture_output=True,
        text=True,
        env={**clean, "PYTHONPATH": str(ROOT), "COLUMNS": "80", **env},
        cwd=ROOT,
        timeout=90,
        check=False,
    )
    return result, time.monotonic() - started


def config_text(bootstrap: str, redis_url: str, connect_timeout_s: float = 60) -> str:
    return f"""\
kafka: {{bootstrap: "{bootstrap}", connect_timeout_s: {connect_timeout_s}}}
redis: {{url: "{redis_url}", connect_timeout_s: 60}}
metrics: {{port: 0}}
pipelines:
  - name: fraud
    source: {{topic: transactions}}
    schema: {{target: is_fraud, features: {{amount: float}}}}
    model: {{estimator: river.linear_model.LogisticRegression}}
"""


def test_run_with_a_wrong_redis_password_exits_at_once_with_one_line(
    tmp_path: Path, broker: str, secured: SecuredRedis
) -> None:
    config = config_text(broker, secured.url_for("alice"))
    result, took = run_cli(tmp_path, config, STREAMLEARN_REDIS_PASSWORD=WRONG_PASSWORD)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: Redis at redis://alice@127.0.0.1:{secured.port}/0 refused")
    assert WRONG_PASSWORD not in result.stderr + result.stdout
    assert took < 30  # start-up included; the retry budget alone is 60 s


def test_run_with_no_broker_exits_with_one_clear_message(tmp_path: Path, redis_url: str) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    result, took = run_cli(tmp_path, config_text(bootstrap, redis_url, connect_timeout_s=2))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # none of kafka-python's ~190 lines of retries
    assert lines[0].startswith(f"error: Kafka broker at {bootstrap} unreachable after ")
    assert "kafka.bootstrap" in lines[0]
    assert took < 30


def test_run_scores_events_with_redis_credentials_kept_out_of_the_url(
    broker: str, secured: SecuredRedis, topic: str
) -> None:
    ensure_topics(broker, [topic])
    events = list(FraudGenerator(seed=3).events(50))
    with KafkaSink(broker) as sink:
        for event in events:
            sink.send(topic, orjson.dumps(event), key=event["entity_id"].encode())
        sink.flush()
    prefix = f"t{uuid.uuid4().hex[:6]}"
    settings = fraud_settings(broker, secured.url_for("alice"), topic, prefix)
    redis_settings = settings.redis.model_copy(update={"password": SecretStr(ALICE_PASSWORD)})
    with App(settings.model_copy(update={"redis": redis_settings})) as app:
        stats = app.run(max_events=len(events))
    assert stats["fraud"].predicted == len(events)
    admin = redis.Redis(port=secured.port, password=ADMIN_PASSWORD)
    assert admin.exists(f"{prefix}:fraud:pred:{events[-1]['entity_id']}")
