"""PrometheusHooks keeps the documented metrics; MetricsServer serves them over real HTTP."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from connectors.metrics_server import MetricsServer
from connectors.prometheus import DEFAULT_LATENCY_BUCKETS_S, PrometheusHooks
from connectors.prometheus_collectors import ArrayHistogram
from streamlearn.errors import ServiceUnavailable
from streamlearn.health import HealthMonitor
from streamlearn.hooks import PipelineHooks


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def hooks(registry: CollectorRegistry) -> PrometheusHooks:
    return PrometheusHooks(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def call_every_hook(hooks: PipelineHooks, pipeline: str = "fraud") -> None:
    hooks.on_consumed(pipeline, 10)
    hooks.on_invalid(pipeline, "not_json", 1)
    hooks.on_predictions(pipeline, np.array([0.003, 0.04]))
    hooks.on_learned(pipeline, 9)
    hooks.on_batch_closed(pipeline, 10, "size")
    hooks.on_batch_size(pipeline, 64)
    hooks.on_stage(pipeline, "predict", 0.002)
    hooks.on_target_missed(pipeline, 1)
    hooks.on_lag(pipeline, {0: 5})
    hooks.on_model_score(pipeline, {"auc": 0.9})
    hooks.on_drift(pipeline)
    hooks.on_model_version(pipeline, 3)
    hooks.on_checkpoint(pipeline, 0.0)
    hooks.on_ready(True)


def test_implements_every_hook_of_the_base() -> None:
    hook_names = {n for n in vars(PipelineHooks) if n.startswith("on_")}
    assert hook_names
    assert all(n in vars(PrometheusHooks) for n in hook_names)


def test_counters_add_up_per_pipeline_and_label(
    hooks: PrometheusHooks, registry: CollectorRegistry
) -> None:
    hooks.on_consumed("fraud", 100)
    hooks.on_consumed("fraud", 50)
    hooks.on_consumed("churn", 7)
    hooks.on_invalid("fraud", "not_json", 2)
    hooks.on_invalid("fraud", "missing_field", 1)
    hooks.on_invalid("fraud", "not_json", 3)
    hooks.on_learned("fraud", 40)
    hooks.on_target_missed("fraud", 4)
    hooks.on_batch_closed("fraud", 32, "size")
    hooks.on_batch_closed("fraud", 5, "deadline")
    hooks.on_batch_closed("fraud", 32, "size")
    hooks.on_drift("fraud")
    hooks.on_drift("fraud")
    hooks.on_too_late("churn", 3)
    hooks.on_too_late("churn", 1)

    assert value(registry, "streamlearn_events_consumed_total", pipeline="fraud") == 150
    assert value(registry, "streamlearn_events_consumed_total", pipeline="churn") == 7
    invalid = "streamlearn_events_invalid_total"
    assert value(registry, invalid, pipeline="fraud", reason="not_json") == 5
    assert value(registry, invalid, pipeline="fraud", reason="missing_field") == 1
    assert value(registry, "streamlearn_learned_total", pipeline="fraud") == 40
    assert value(registry, "streamlearn_latency_target_missed_total", pipeline="fraud") == 4
    assert value(registry, "streamlearn_batches_total", pipeline="fraud", trigger="size") == 2
    assert value(registry, "streamlearn_batches_total", pipeline="fraud", trigger="deadline") == 1
    assert value(registry, "streamlearn_drift_detected_total", pipeline="fraud") == 2
    assert value(registry, "streamlearn_events_too_late_total", pipeline="churn") == 4


def test_gauges_hold_the_latest_value(hooks: PrometheusHooks, registry: CollectorRegistry) -> None:
    hooks.on_batch_size("fraud", 256)
    hooks.on_batch_size("fraud", 128)
    hooks.on_model_version("fraud", 7)
    hooks.on_model_score("fraud", {"auc": 0.91, "accuracy": 0.97})
    hooks.on_model_score("fraud", {"auc": 0.93})

    assert value(registry, "streamlearn_batch_size", pipeline="fraud") == 128
    assert value(registry, "streamlearn_model_version", pipeline="fraud") == 7
    assert value(registry, "streamlearn_model_score", pipeline="fraud", metric="auc") == 0.93
    assert value(registry, "streamlearn_model_score", pipeline="fraud", metric="accuracy") == 0.97


def test_lag_of_a_revoked_partition_disappears(
    hooks: PrometheusHooks, registry: CollectorRegistry
) -> None:
    hooks.on_lag("fraud", {0: 10, 1: 20})
    hooks.on_lag("fraud", {1: 5, 2: 0})

    assert value(registry, "streamlearn_consumer_lag", pipeline="fraud", partition="0") is None
    assert value(registry, "streamlearn_consumer_lag", pipeline="fraud", partition="1") == 5
    assert value(registry, "streamlearn_consumer_lag", pipeline="fraud", partition="2") == 0


def test_checkpoint_age_is_computed_when_scraped(registry: CollectorRegistry) -> None:
    now = [1_000.0]
    hooks = PrometheusHooks(registry, clock=lambda: now[0])
    age = "streamlearn_checkpoint_age_seconds"
    assert value(registry, age, pipeline="fraud") is None

    hooks.on_checkpoint("fraud", 990.0)
    assert value(registry, age, pipeline="fraud") == 10.0
    now[0] = 1_030.0
    assert value(registry, age, pipeline="fraud") == 40.0
    hooks.on_checkpoint("fraud", 1_025.0)
    assert value(registry, age, pipeline="fraud") == 5.0


def test_stage_durations_are_histograms_per_stage(
    hooks: PrometheusHooks, registry: CollectorRegistry
) -> None:
    hooks.on_stage("fraud", "predict", 0.003)
    hooks.on_stage("fraud", "predict", 0.2)
    hooks.on_stage("fraud", "learn", 0.01)
    name = "streamlearn_batch_duration_seconds"

    assert value(registry, f"{name}_count", pipeline="fraud", stage="predict") == 2
    assert value(registry, f"{name}_bucket", pipeline="fraud", stage="predict", le="0.005") == 1
    assert value(registry, f"{name}_sum", pipeline="fraud", stage="learn") == pytest.approx(0.01)


def test_latency_histogram_matches_prometheus_client_histogram(
    hooks: PrometheusHooks, registry: CollectorRegistry
) -> None:
    rng = np.random.default_rng(7)
    batches = [
        rng.lognormal(mean=-3.5, sigma=1.5, size=2_000),
        np.array(DEFAULT_LATENCY_BUCKETS_S),  # exactly on every bound: `le` includes it
        np.array([0.0, 1e-6, 30.0, 1e6]),  # below the first bound and beyond the last
    ]
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "ref", "ref", ["pipeline"], registry=reference_registry, buckets=DEFAULT_LATENCY_BUCKETS_S
    )
    for batch in batches:
        hooks.on_predictions("fraud", batch)
        for latency in batch:
            reference.labels("fraud").observe(float(latency))

    name = "streamlearn_event_latency_seconds"
    total = sum(len(b) for b in batches)
    for bound in [*DEFAULT_LATENCY_BUCKETS_S, float("inf")]:
        le = "+Inf" if bound == float("inf") else str(bound)
        expected = reference_registry.get_sample_value(
            "ref_bucket", {"pipeline": "fraud", "le": le}
        )
        assert value(registry, f"{name}_bucket", pipeline="fraud", le=le) == expected, le
    assert value(registry, f"{name}_bucket", pipeline="fraud", le="+Inf") == total
    assert value(registry, f"{name}_count", pipeline="fraud") == total
    assert value(registry, f"{name}_sum", pipeline="fraud") == pytest.approx(
        reference_registry.get_sample_value("ref_sum", {"pipeline": "fraud"})
    )
    assert value(registry, "streamlearn_predictions_total", pipeline="fraud") == total


def test_latency_buckets_are_cumulative_for_known_latencies(registry: CollectorRegistry) -> None:
    hooks = PrometheusHooks(registry, latency_buckets_s=[0.01, 0.1, 1.0])
    hooks.on_predictions("fraud", np.array([0.005, 0.01, 0.02, 0.5, 0.5, 7.0]))
    hooks.on_predictions("fraud", np.array([0.001]))
    buckets = {
        le: value(registry, "streamlearn_event_latency_seconds_bucket", pipeline="fraud", le=le)
        for le in ["0.01", "0.1", "1.0", "+Inf"]
    }
    assert buckets == {"0.01": 3, "0.1": 4, "1.0": 6, "+Inf": 7}


def test_latency_without_a_known_ingest_time_is_counted_but_not_observed(
    hooks: PrometheusHooks, registry: CollectorRegistry
) -> None:
    hooks.on_predictions("fraud", np.array([0.01, np.nan]))
    assert value(registry, "streamlearn_predictions_total", pipeline="fraud") == 2
    assert value(registry, "streamlearn_event_latency_seconds_count", pipeline="fraud") == 1
    assert value(registry, "streamlearn_event_latency_seconds_sum", pipeline="fraud") == 0.01


def test_concurrent_batches_lose_no_observation(
    hooks: PrometheusHooks, registry: CollectorRegistry
) -> None:
    batch = np.full(1_000, 0.004)

    def report() -> None:
        for _ in range(50):
            hooks.on_predictions("fraud", batch)

    threads = [threading.Thread(target=report) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count = "streamlearn_event_latency_seconds_count"
    assert value(registry, count, pipeline="fraud") == 4 * 50 * 1_000


@pytest.mark.parametrize("buckets", [[], [0.1, 0.01], [0.1, 0.1], [0.1, float("inf")]])
def test_bad_latency_buckets_are_refused(buckets: list[float]) -> None:
    with pytest.raises(ValueError, match="buckets"):
        ArrayHistogram("x_seconds", "x", buckets)


def test_exposition_passes_promtool(hooks: PrometheusHooks) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian package `prometheus` provides it)")
    call_every_hook(hooks)
    call_every_hook(hooks, "churn")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(hooks.registry),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def served(hooks: PrometheusHooks) -> Iterator[str]:
    with MetricsServer(hooks, "127.0.0.1", 0) as server:
        yield f"http://127.0.0.1:{server.port}"


def test_metrics_endpoint_serves_the_text_exposition(hooks: PrometheusHooks, served: str) -> None:
    hooks.on_consumed("fraud", 12)
    hooks.on_predictions("fraud", np.array([0.003]))
    status, content_type, body = get(f"{served}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'streamlearn_events_consumed_total{pipeline="fraud"} 12.0' in body
    assert 'streamlearn_event_latency_seconds_bucket{le="0.005",pipeline="fraud"} 1.0' in body


def test_metrics_endpoint_speaks_openmetrics_when_asked(served: str) -> None:
    status, content_type, body = get(
        f"{served}/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_health_and_readiness(hooks: PrometheusHooks, served: str) -> None:
    assert get(f"{served}/healthz")[::2] == (200, "ok\n")
    assert get(f"{served}/readyz")[0] == 503
    hooks.on_ready(True)
    assert get(f"{served}/readyz")[0] == 200
    hooks.on_ready(False)
    assert get(f"{served}/readyz")[0] == 503
    assert get(f"{served}/nope")[0] == 404


def test_health_endpoints_answer_from_the_monitor_when_asked(hooks: PrometheusHooks) -> None:
    now = [100.0]
    health = HealthMonitor(
        ["fraud", "churn"], stall_s=5, liveness_timeout_s=60, clock=lambda: now[0]
    )
    with MetricsServer(hooks, "127.0.0.1", 0, health) as server:
        url = f"http://127.0.0.1:{server.port}"
        assert get(f"{url}/healthz")[::2] == (200, "ok\n")
        status, content_type, body = get(f"{url}/readyz")
        assert (status, content_type) == (503, "text/plain; charset=utf-8")
        assert [line.split(":")[0] for line in body.splitlines()] == ["fraud", "churn"]

        health.on_pipeline_ready("fraud", True)
        health.on_pipeline_ready("churn", True)
        assert get(f"{url}/readyz")[::2] == (200, "ready\n")

        health.on_batch_started("churn")  # then the pipeline's thread blocks: no more hooks
        now[0] += 6
        status, _, body = get(f"{url}/readyz")
        assert status == 503
        assert body.startswith("churn: a batch has been in hand for 6.0 s")
        assert get(f"{url}/healthz")[0] == 200

        now[0] += 60
        health.on_failed("fraud", "OutputRejected: WRONGTYPE")
        status, _, body = get(f"{url}/healthz")
        assert status == 503
        assert body.splitlines() == [
            "fraud: failed: OutputRejected: WRONGTYPE",
            "churn: no batch finished for 66 s while input waits (a batch in hand for 66 s; "
            "health.liveness_timeout_s is 60 s)",
        ]


def test_taken_port_is_a_clear_error(hooks: PrometheusHooks) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServiceUnavailable, match=r"already in use.*metrics\.port"):
            MetricsServer(hooks, "127.0.0.1", port).start()


def test_stop_releases_the_port(hooks: PrometheusHooks) -> None:
    server = MetricsServer(hooks, "127.0.0.1", 0).start()
    port = server.port
    assert port != 0
    server.stop()
    again = MetricsServer(hooks, "127.0.0.1", port).start()
    try:
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        again.stop()


def test_label_delays_fill_a_histogram_from_seconds_to_months() -> None:
    hooks = PrometheusHooks()
    day = 86_400.0
    hooks.on_label_delays("retention", np.array([5.0, 30 * day, 40 * day]))
    sample = hooks.registry.get_sample_value
    labels = {"pipeline": "retention"}
    assert sample("streamlearn_label_delay_seconds_count", labels) == 3
    assert sample("streamlearn_label_delay_seconds_bucket", {**labels, "le": "10.0"}) == 1
    assert sample("streamlearn_label_delay_seconds_bucket", {**labels, "le": "2.592e+06"}) == 2
