"""The container deployment's files agree with the repository and with the metrics exported.

No Docker engine runs here, so this checks what can be checked without one: the compose file
(one learner, scalable scorers), the Dockerfile, Prometheus' config, Grafana's provisioning and
every dashboard query.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from connectors.metrics_server import MetricsServer
from connectors.prometheus import PrometheusHooks
from streamlearn.config import PipelineConfig, load_config
from streamlearn.roles import ROLES

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SERVICES = {"kafka", "redis", "topics", "prometheus", "grafana", "learner", "scorer", "generator"}
CONFIG_IN_CONTAINER = "/etc/streamlearn/config.yaml"
METRIC = re.compile(r"\bstreamlearn_[a-z0-9_]+")
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$pipeline": ".*"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(DOCKER / "docker-compose.yml")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((DOCKER / "grafana/dashboards/streamlearn.json").read_text(encoding="utf-8"))


def exercised_hooks() -> PrometheusHooks:
    hooks = PrometheusHooks(CollectorRegistry())
    hooks.on_consumed("fraud", 10)
    hooks.on_invalid("fraud", "not_json", 1)
    hooks.on_predictions("fraud", np.array([0.003, 0.04]))
    hooks.on_learned("fraud", 9)
    hooks.on_batch_closed("fraud", 10, "size")
    hooks.on_batch_size("fraud", 64)
    hooks.on_stage("fraud", "predict", 0.002)
    hooks.on_target_missed("fraud", 1)
    hooks.on_lag("fraud", {0: 5})
    hooks.on_model_score("fraud", {"auc": 0.9, "accuracy": 0.95})
    hooks.on_drift("fraud")
    hooks.on_labels_unmatched("fraud", "duplicate", 1)
    hooks.on_model_version("fraud", 3)
    hooks.on_model_staleness("fraud", 0.4)
    hooks.on_checkpoint("fraud", time.time())
    hooks.on_ready(True)
    # A retention pipeline (labels on their own topic) and a recommendation pipeline, for the
    # per-task panels: label join rate and share, hit rate and NDCG at 10.
    hooks.on_consumed("churn", 10)
    hooks.on_learned("churn", 4)
    hooks.on_model_version("churn", 4)
    hooks.on_labels_unmatched("churn", "past_horizon", 1)
    hooks.on_label_delays("churn", np.array([30 * 86_400.0]))
    hooks.on_too_late("churn", 2)
    hooks.on_consumed("recs", 10)
    hooks.on_model_score("recs", {"hit_rate_at_10": 0.2, "ndcg_at_10": 0.1})
    return hooks


def exported_sample_names() -> set[str]:
    registry = exercised_hooks().registry
    return {sample.name for family in registry.collect() for sample in family.samples}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def charts(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that query something (every one but the row headers)."""
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def role_of(service: dict[str, Any]) -> str:
    command = service["command"]
    return str(command[command.index("--role") + 1])


def as_sent_to_prometheus(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


# --- compose ------------------------------------------------------------------------------


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= SERVICES


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} has no version in its tag"


def test_compose_builds_from_the_repository_root(compose: dict[str, Any]) -> None:
    for name in ("learner", "scorer", "generator"):
        build = compose["services"][name]["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).is_file(), name


def test_compose_bind_mounts_exist_in_the_repository(compose: dict[str, Any]) -> None:
    mounts = [m for s in compose["services"].values() for m in s.get("volumes", [])]
    bind_sources = [m.split(":")[0] for m in mounts if m.startswith(".")]
    assert "../examples/fraud/config.yaml" in bind_sources
    for source in bind_sources:
        assert (DOCKER / source).exists(), f"{source} is mounted but missing from the repository"


def test_learner_and_scorers_reach_kafka_and_redis_inside_the_network(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("learner", "scorer"):
        service = services[name]
        environment = service["environment"]
        assert environment["STREAMLEARN_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert environment["STREAMLEARN_REDIS_URL"] == "redis://redis:6379/0", name
        assert environment["STREAMLEARN_METRICS_PORT"] == "9100", name
        # Both sign or neither does: scorers refuse unsigned models when they hold the key.
        assert environment["STREAMLEARN_CHECKPOINT_KEY"] == "${STREAMLEARN_CHECKPOINT_KEY:-}"
        assert f"../examples/fraud/config.yaml:{CONFIG_IN_CONTAINER}:ro" in service["volumes"]
        for dependency in ("kafka", "redis"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy", name
            assert services[dependency]["healthcheck"]["test"]
        assert service["restart"] == "unless-stopped", name
        assert service["stop_grace_period"] == "30s", name
    kafka = services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "broker" in kafka["KAFKA_PROCESS_ROLES"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]


def test_one_learner_and_scorers_run_their_roles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "processor" not in services
    roles = {name: role_of(s) for name, s in services.items() if "--role" in s.get("command", [])}
    assert roles == {"learner": "learner", "scorer": "scorer"}
    assert set(roles.values()) <= set(ROLES)
    for name in roles:
        assert services[name]["command"] == [
            "run",
            CONFIG_IN_CONTAINER,
            "--role",
            roles[name],
        ]
    # The learner is one service with the host's port 9100; the scorers get none.
    assert services["learner"]["ports"] == ["9100:9100"]
    assert services["scorer"]["depends_on"]["learner"]["condition"] == "service_started"


def test_mounted_configuration_can_be_split_into_roles() -> None:
    # Only classification pipelines run as --role scorer/learner; others are refused.
    config = load_config(ROOT / "examples/fraud/config.yaml")
    assert config.pipelines
    assert all(isinstance(p, PipelineConfig) for p in config.pipelines)


def test_scorer_can_be_scaled(compose: dict[str, Any]) -> None:
    scorer = compose["services"]["scorer"]
    # `docker compose up --scale scorer=N` fails on a fixed container name or host port.
    assert "container_name" not in scorer
    assert "ports" not in scorer
    assert scorer["expose"] == [scorer["environment"]["STREAMLEARN_METRICS_PORT"]]
    assert "hostname" not in scorer


def test_events_topic_has_partitions_for_the_scorers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    (pipeline,) = load_config(ROOT / "examples/fraud/config.yaml").pipelines
    command = services["topics"]["command"]
    assert command[0] == "/opt/kafka/bin/kafka-topics.sh"
    assert services["topics"]["image"] == services["kafka"]["image"]
    assert {"--create", "--if-not-exists"} <= set(command)
    assert command[command.index("--topic") + 1] == pipeline.source.topic
    assert command[command.index("--bootstrap-server") + 1] == "kafka:9092"
    partitions = int(command[command.index("--partitions") + 1])
    assert partitions >= 3, "fewer partitions than the scorers the README scales to"
    # Topics created on first use, and by the generator, get as many.
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == partitions
    generator = services["generator"]["command"]
    assert int(generator[generator.index("--partitions") + 1]) == partitions
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("scorer", "generator"):
        condition = services[name]["depends_on"]["topics"]["condition"]
        assert condition == "service_completed_successfully", name


def test_generator_waits_for_kafka(compose: dict[str, Any]) -> None:
    services = compose["services"]
    generator = services["generator"]
    assert generator["image"] == services["learner"]["image"] == services["scorer"]["image"]
    assert generator["command"][:2] == ["generate", "fraud"]
    command = " ".join(generator["command"])
    assert "--events 1000000" in command and "--rate 2000" in command
    assert generator["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert generator["environment"]["STREAMLEARN_KAFKA_BOOTSTRAP"] == "kafka:9092"


# --- Prometheus and Grafana configuration ------------------------------------------------------


def test_prometheus_scrapes_the_learner_and_every_scorer(compose: dict[str, Any]) -> None:
    config = load_yaml(DOCKER / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    learner = jobs["streamlearn-learner"]
    assert learner["static_configs"] == [{"targets": ["learner:9100"]}]
    scorer = jobs["streamlearn-scorer"]
    assert "static_configs" not in scorer
    # Compose's DNS answers a service name with every replica's address (type A records);
    # `tasks.scorer` exists only in swarm mode.
    (discovery,) = scorer["dns_sd_configs"]
    assert discovery["names"] == ["scorer"]
    assert discovery["type"] == "A"
    exposed = compose["services"]["scorer"]["expose"]
    assert [str(discovery["port"])] == exposed
    for job in (learner, scorer):
        assert job.get("metrics_path", "/metrics") == "/metrics"
    services = compose["services"]
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert set(services["prometheus"]["depends_on"]) == {"learner", "scorer"}


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian package `prometheus` provides it)")
    result = subprocess.run(
        [promtool, "check", "config", str(DOCKER / "prometheus.yml")],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_grafana_provisioning_matches_the_dashboard(
    compose: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    grafana = compose["services"]["grafana"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    datasources = load_yaml(DOCKER / "grafana/provisioning/datasources/prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = load_yaml(DOCKER / "grafana/provisioning/dashboards/streamlearn.yml")
    mount_targets = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"]}
    assert providers["providers"][0]["options"]["path"] == mount_targets["./grafana/dashboards"]

    used = [p["datasource"] for p in charts(dashboard)]
    used += [t["datasource"] for p in charts(dashboard) for t in p["targets"]]
    used += [v["datasource"] for v in dashboard["templating"]["list"]]
    assert all(d == {"type": "prometheus", "uid": source["uid"]} for d in used)


# --- dashboard --------------------------------------------------------------------------------


def test_dashboard_is_identified_and_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "streamlearn"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["targets"] for p in charts(dashboard))
    assert all(not p.get("targets") for p in dashboard["panels"] if p["type"] == "row")


def test_dashboard_queries_only_metrics_that_are_exported(dashboard: dict[str, Any]) -> None:
    exported = exported_sample_names()
    referenced = {m for q in dashboard_queries(dashboard) for m in METRIC.findall(q)}
    assert referenced - exported == set()


def test_dashboard_shows_every_exported_metric(dashboard: dict[str, Any]) -> None:
    registry = exercised_hooks().registry
    families = {family.name for family in registry.collect()}
    text = "\n".join(dashboard_queries(dashboard))
    missing = {f for f in families if not re.search(rf"\b{f}(_total|_bucket|_sum|_count)?\b", text)}
    assert missing == set()


def test_dashboard_has_retention_and_recommendation_panels(dashboard: dict[str, Any]) -> None:
    by_title = {p["title"]: [t["expr"] for t in p["targets"]] for p in charts(dashboard)}
    joined = by_title["Delayed labels: joined and unmatched / s"]
    assert any("streamlearn_learned_total" in q for q in joined)
    assert any("streamlearn_labels_unmatched_total" in q for q in joined)
    assert 'metric="hit_rate_at_10"' in by_title["Recommendation: hit rate@10 (prequential)"][0]
    assert 'metric="ndcg_at_10"' in by_title["Recommendation: NDCG@10 (prequential)"][0]


def test_dashboard_has_per_replica_panels(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Scale-out: each replica (instance)"]
    by_title = {p["title"]: [t["expr"] for t in p["targets"]] for p in charts(dashboard)}
    per_instance = {
        "Events consumed / s by instance": "streamlearn_events_consumed_total",
        "Predictions and learning / s by instance": "streamlearn_predictions_total",
        "Event latency p99 by instance": "streamlearn_event_latency_seconds_bucket",
        "Model version by instance": "streamlearn_model_version",
        "Consumer lag by instance": "streamlearn_consumer_lag",
    }
    for title, metric in per_instance.items():
        (query, *_) = by_title[title]
        assert metric in query, title
        assert re.search(r"\bby \([^)]*\binstance\b", query), title
    (latency,) = by_title["Event latency p99 by instance"]
    assert latency.startswith("histogram_quantile(0.99,")
    (staleness,) = by_title["Model staleness by instance"]
    # Scorers report staleness; a process that learns its own model is drawn at 0.
    assert staleness.startswith('streamlearn_model_staleness_seconds{pipeline=~"$pipeline"} or ')
    assert "0 * streamlearn_model_version" in staleness


def test_dashboard_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in dashboard["panels"]
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in dashboard["panels"])


def test_every_dashboard_query_is_filtered_by_pipeline(dashboard: dict[str, Any]) -> None:
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "pipeline"
    for query in dashboard_queries(dashboard):
        selectors = re.findall(r"streamlearn_[a-z0-9_]+(\{[^}]*\})?", query)
        assert selectors, query
        assert all('pipeline=~"$pipeline"' in s for s in selectors), query


def test_dashboard_queries_return_data_from_a_real_prometheus(dashboard: dict[str, Any]) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("the prometheus server is not on PATH (Debian package `prometheus`)")
    queries = [as_sent_to_prometheus(q) for q in dashboard_queries(dashboard)]
    hooks = exercised_hooks()
    with MetricsServer(hooks, "127.0.0.1", 0) as exporter, tempfile.TemporaryDirectory() as tmp:
        api = run_prometheus(prometheus, Path(tmp), f"127.0.0.1:{exporter.port}")
        try:
            empty = wait_for_results(api, queries, hooks)
            (staleness,) = [q for q in queries if q.startswith("streamlearn_model_staleness")]
            answer = api.query(staleness)["data"]["result"]
        finally:
            api.process.terminate()
            api.process.wait(timeout=10)
    assert empty == [], "queries that parsed but returned nothing"
    # fraud reports its staleness, as a scorer does; churn reports a model version and no
    # staleness, as a process that learns its own model does, and is drawn at 0.
    drawn = {series["metric"]["pipeline"]: float(series["value"][1]) for series in answer}
    assert drawn == {"fraud": 0.4, "churn": 0.0}


class PrometheusUnderTest:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as error:
            return dict(json.load(error))


def run_prometheus(binary: str, tmp: Path, target: str) -> PrometheusUnderTest:
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "streamlearn", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                return PrometheusUnderTest(process, url)
        except OSError:
            time.sleep(0.1)
    process.terminate()
    pytest.fail("prometheus did not become ready within 20 s")


def wait_for_results(
    api: PrometheusUnderTest, queries: list[str], hooks: PrometheusHooks
) -> list[str]:
    """Return the queries still empty after a few scrapes; fail on any that does not parse."""
    deadline = time.monotonic() + 20
    while True:
        # Keep counters moving so rates between scrapes are not all zero.
        hooks.on_consumed("fraud", 10)
        hooks.on_predictions("fraud", np.array([0.003, 0.04]))
        hooks.on_learned("churn", 4)
        hooks.on_labels_unmatched("churn", "past_horizon", 1)
        hooks.on_label_delays("churn", np.array([29 * 86_400.0, 31 * 86_400.0]))
        answers = {q: api.query(q) for q in queries}
        for query, answer in answers.items():
            assert answer["status"] == "success", f"{query}: {answer.get('error')}"
        empty = [q for q, a in answers.items() if not a["data"]["result"]]
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(0.5)


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_copy_sources_exist_and_are_not_ignored() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copies = [args for op, args in dockerfile_instructions() if op == "COPY"]
    sources = [s for a in copies if not a.startswith("--from") for s in shlex.split(a)[:-1]]
    assert "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_dockerfile_runs_the_cli_as_a_user() -> None:
    instructions = dockerfile_instructions()
    ops = dict(instructions)
    assert all(args.startswith("python:3.11-slim") for op, args in instructions if op == "FROM")
    assert ops["USER"] not in {"root", "0"}
    assert json.loads(ops["ENTRYPOINT"]) == ["streamlearn"]
    assert json.loads(ops["CMD"]) == ["run", "/etc/streamlearn/config.yaml"]
    assert ops["EXPOSE"] == "9100"
    assert any("pip install" in args for op, args in instructions if op == "RUN")


def healthcheck_command() -> list[str]:
    (args,) = [args for op, args in dockerfile_instructions() if op == "HEALTHCHECK"]
    command = json.loads(args[args.index("CMD") + len("CMD") :])
    assert command[:2] == ["python", "-c"]
    return [sys.executable, "-c", command[2]]


def test_dockerfile_healthcheck_probes_healthz() -> None:
    command = healthcheck_command()
    with MetricsServer(PrometheusHooks(CollectorRegistry()), "127.0.0.1", 0) as server:
        port = server.port
        env = {"STREAMLEARN_METRICS_PORT": str(port)}
        healthy = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
    unhealthy = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
    assert healthy.returncode == 0, healthy.stderr.decode()
    assert unhealthy.returncode != 0
