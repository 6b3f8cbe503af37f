"""``python -m benchmarks.recommendation_e2e [--quick] [--events N] [--profile]``.

Issue 8's throughput and memory figures for live recommendations, end to end on the embedded
Kafka-protocol broker and Redis, from a backlog:

1. a producer process writes N interactions (``recommendation_events``: 100 000 users, a
   10 000-item catalogue) to a topic of two partitions, keyed by user id, each with its event
   time as the record timestamp;
2. a processor process then runs the real :class:`streamlearn.app.App` on the packaged
   recommendation configuration (``streamlearn/tasks/recommendation.yaml``, as it is when run:
   K = 10, at most 100 000 users and 50 000 items) until it has consumed all N.

Throughput is interactions consumed over the time from the first message consumed to the last
batch closed (start-up, the group join and the final checkpoint are left out). The processor's
RSS is sampled every 0.5 s and read off at 100k, 250k, 500k and 1M interactions consumed; Redis
``used_memory`` and the number of ``sl:recommendation:recs:*`` lists are read at the end, with
the prequential hit rate and NDCG at 10 from the App's Prometheus registry. ``--profile`` adds a
second run (fresh broker and Redis) sampled by py-spy: where the pipeline thread's time goes.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.report import machine_info, write_results
from benchmarks.retention_e2e import Sampler, Timing, _in_child, _size_summary, _thin, rss_mb
from benchmarks.retention_profile import summarise
from connectors.embedded import EmbeddedBroker, EmbeddedRedis
from streamlearn.config import AppConfig, parse_config
from streamlearn.demo_tasks import DEMO_TASKS, demo_config

RESULTS = Path(__file__).parent / "results"
PIPELINE = "recommendation"
THREAD = f"pipeline-{PIPELINE}"  # the App runs each pipeline on a thread of this name
FULL_EVENTS, QUICK_EVENTS = 1_000_000, 100_000
USERS, ITEMS, SEED, PARTITIONS, K = 100_000, 10_000, 7, 2, 10
MILESTONES = (100_000, 250_000, 500_000, 1_000_000)
TARGET_PER_S = 5_000  # interactions per second from a backlog, on this 2-core machine
TARGET_GROWTH_PCT = 10.0  # RSS growth from 100k to 1M interactions consumed
PROFILE_RATE_HZ = 200
_FLUSH_EVERY = 20_000

# Where the pipeline thread's time goes, by the innermost of these frames found in a stack.
# Each stage is (name, markers): a frame matches when it contains any of the markers.
_STAGE_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("decode + validate", ("EventDecoder", "streamlearn/decoding.py", "_valid_interactions")),
    ("serve: histories → contexts", ("batch_contexts", "recommend/context.py")),
    ("serve: factor scores (dense)", ("Factors.scores", "Factors.user_vectors")),
    ("serve: co-occurrence scores", ("Cooccurrence.scores",)),
    ("serve: blend (dense)", ("Recommender._scores",)),
    ("serve: top-k", ("_top_k",)),
    ("serve: lists (ids, exclusions)", ("Recommender._rank",)),
    ("serve: other", ("Recommender.serve",)),
    ("learn: evaluation (hit rate, NDCG)", ("RankingEvaluator", "recommend/evaluation.py")),
    ("learn: drift detector", ("DriftMonitor", "streamlearn/drift.py")),
    ("learn: factors (BPR)", ("Factors.learn", "Factors._mean_matrix", "Factors._init")),
    ("learn: co-occurrence", ("Cooccurrence.learn", "Cooccurrence._add")),
    ("learn: popularity", ("Popularity.",)),
    ("learn: user histories", ("UserHistories", "_ring_writes", "_ring_order")),
    ("learn: catalogue", ("ItemCatalogue",)),
    ("learn: other", ("Recommender.learn",)),
    ("Redis lists write", ("RecommendationStore", "connectors/redis_recs.py")),
    ("checkpoint", ("Checkpointer", "streamlearn/checkpoint.py")),
    ("Kafka poll", ("KafkaSource.poll",)),
    ("Kafka commit", ("KafkaSource.commit",)),
    ("Kafka produce / flush", ("KafkaSink",)),
    ("batching", ("AdaptiveBatcher", "streamlearn/batching.py")),
)
STAGES = tuple((name, marker) for name, markers in _STAGE_MARKERS for marker in markers)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the benchmark, write the results."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.recommendation_e2e", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} interactions")
    parser.add_argument("--events", type=int, help=f"interactions (default {FULL_EVENTS:,})")
    parser.add_argument("--profile", action="store_true", help="add a py-spy profiled run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    parser.add_argument(
        "--max-users",
        type=int,
        help="cap on users held (default: the config's); with --max-items, results go to "
        "recommendation_e2e_capped.{json,md}: a run whose caps are reached shows the bound",
    )
    parser.add_argument("--max-items", type=int, help="cap on items held (default: the config's)")
    args = parser.parse_args(argv)
    caps = {
        key: value
        for key, value in (("max_users", args.max_users), ("max_items", args.max_items))
        if value is not None
    }
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(message)s")
    events = args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS)
    command = "python -m benchmarks.recommendation_e2e " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    results = run(events, args.quick, args.profile, command.strip(), caps)
    json_path, md_path = write(results, args.out, "recommendation_e2e_capped" if caps else None)
    print(f"results written to {json_path} and {md_path}")
    print(md_path.read_text(encoding="utf-8"))


def run(
    events: int, quick: bool, profile: bool, command: str, caps: dict[str, int] | None = None
) -> dict[str, Any]:
    """Produce and process ``events`` interactions (twice with ``profile``); every figure.

    ``caps`` overrides the configuration's ``max_users`` / ``max_items``.
    """
    machine = machine_info()
    started = time.monotonic()
    caps = caps or {}
    e2e = run_end_to_end(events, "interactions-e2e", caps=caps)
    print(
        f"end to end: {e2e['interactions_per_s']:,} interactions/s over {e2e['processing_s']} s"
        f" [{time.monotonic() - started:.0f} s]",
        flush=True,
    )
    results: dict[str, Any] = {
        "quick": quick,
        "command": command,
        "machine": machine,
        "stream": {
            "generator": "streamlearn.generators.recommendation.recommendation_events",
            "events": events,
            "seed": SEED,
            "users": USERS,
            "items": ITEMS,
            "partitions": PARTITIONS,
            "key": "user_id",
        },
        "pipeline": _pipeline_dict(caps),
        "end_to_end": e2e,
    }
    if profile:
        results["profile"] = _profiled(events, caps)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results)
    return results


def run_end_to_end(
    events: int, topic: str, profile: Path | None = None, caps: dict[str, int] | None = None
) -> dict[str, Any]:
    """Produce ``events`` interactions to ``topic``, then process them; on fresh services."""
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis_server:
        produced = _in_child(_produce, events, broker.bootstrap, topic)
        print(
            f"produced {produced['messages']:,} interactions in {produced['seconds']} s",
            flush=True,
        )
        processed = _in_child(
            _process, events, broker.bootstrap, redis_server.url, topic, caps or {}, profile=profile
        )
    return {"produced": produced, **processed}


def _profiled(events: int, caps: dict[str, int]) -> dict[str, Any]:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"recommendation-spy-{os.getpid()}.txt"
    began = time.monotonic()
    try:
        profiled = run_end_to_end(events, "interactions-spy", profile=path, caps=caps)
        summary = profile_summary(path, PROFILE_RATE_HZ)
    finally:
        path.unlink(missing_ok=True)
    print(f"profiled run done [{time.monotonic() - began:.0f} s]", flush=True)
    return {
        "interactions_per_s_while_sampled": profiled["interactions_per_s"],
        "processing_s": profiled["processing_s"],
        **summary,
    }


def app_config(
    bootstrap: str, redis_url: str, topic: str, caps: dict[str, int] | None = None
) -> AppConfig:
    """The packaged recommendation configuration, reading ``topic`` in a group of that name.

    Examples
    --------
    >>> cfg = app_config("127.0.0.1:9092", "redis://127.0.0.1:6379/0", "t-1")
    >>> p = cfg.pipelines[0]
    >>> p.name, p.source.topic, p.source.group, p.recommendation.k, p.recommendation.max_users
    ('recommendation', 't-1', 't-1', 10, 100000)
    """
    packaged = demo_config(DEMO_TASKS[PIPELINE], bootstrap, redis_url, metrics_port=0)
    base = packaged.model_dump(by_alias=True)
    pipeline = base["pipelines"][0]
    pipeline["source"] = {**pipeline["source"], "topic": topic, "group": topic}
    pipeline["outputs"] = {**pipeline["outputs"], "dead_letter_topic": f"{topic}.dlq"}
    pipeline["recommendation"] = {**pipeline["recommendation"], **(caps or {})}
    return parse_config(base, env={})


def _pipeline_dict(caps: dict[str, int]) -> dict[str, Any]:
    pipeline = app_config("127.0.0.1:9092", "redis://127.0.0.1:6379/0", "t", caps).pipelines[0]
    dumped: dict[str, Any] = pipeline.model_dump(mode="json")
    return {k: dumped[k] for k in ("name", "task", "recommendation", "batching", "checkpoint")}


# --- producer process -------------------------------------------------------------------------


def _produce(events: int, bootstrap: str, topic: str) -> dict[str, Any]:
    from connectors.kafka import KafkaSink, ensure_topics, wait_for_broker
    from streamlearn.generators.recommendation import recommendation_events

    logging.getLogger("kafka").setLevel(logging.ERROR)
    wait_for_broker(bootstrap, timeout_s=60)
    ensure_topics(bootstrap, [topic], partitions=PARTITIONS)
    started = time.monotonic()
    kinds: Counter[str] = Counter()
    users: set[str] = set()
    items: set[str] = set()
    size = n = 0
    stream = recommendation_events(events, seed=SEED, users=USERS, items=ITEMS)
    with KafkaSink(bootstrap, client_id="recommendation-benchmark-load") as sink:
        for n, event in enumerate(stream, 1):
            value = orjson.dumps(event)
            size += len(value)
            kinds[event["event_type"]] += 1
            users.add(event["user_id"])
            items.add(event["item_id"])
            sink.send(topic, value, key=event["user_id"].encode(), timestamp_ms=event["ts"])
            if n % _FLUSH_EVERY == 0:
                sink.flush(timeout_s=120)
        sink.flush(timeout_s=120)
    return {
        "messages": n,
        "seconds": round(time.monotonic() - started, 1),
        "bytes": size,
        "distinct_users": len(users),
        "distinct_items": len(items),
        "event_types": dict(kinds.most_common()),
    }


# --- processor process ------------------------------------------------------------------------


class ModelSampler(Sampler):
    """The retention benchmark's RSS and Redis sampler, with the users and items the model holds."""

    def __init__(self, redis_url: str, timing: Timing, tasks: list[Any]) -> None:
        super().__init__(redis_url, timing)
        self.tasks = tasks

    def sample(self) -> dict[str, float]:
        """As :meth:`Sampler.sample`, plus the model's users and catalogue size when built."""
        out = super().sample()
        if self.tasks:
            recommender = self.tasks[0].recommender
            out["users"] = len(recommender.histories)
            out["items"] = len(recommender.catalogue)
        return out


def _process(
    events: int, bootstrap: str, redis_url: str, topic: str, caps: dict[str, int]
) -> dict[str, Any]:
    from streamlearn.app import App

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    rss_start = rss_mb()
    config = app_config(bootstrap, redis_url, topic, caps)
    timing = Timing()
    tasks: list[Any] = []

    class BenchApp(App):
        def _runner(self, *args: Any, **kwargs: Any) -> Any:
            runner = super()._runner(*args, **kwargs)
            tasks.append(runner.pipeline)
            return runner

    sampler = ModelSampler(redis_url, timing, tasks)
    sampler.start()
    started = time.monotonic()
    with BenchApp(config, observers=(timing,)) as app:
        stats = app.run(max_events=events)[PIPELINE]
        registry = app.metrics.registry
        scores = {
            metric: registry.get_sample_value(
                "streamlearn_model_score", {"pipeline": PIPELINE, "metric": metric}
            )
            for metric in (f"hit_rate_at_{K}", f"ndcg_at_{K}")
        }
    returned = time.monotonic()
    sampler.done.set()
    sampler.join()
    final = sampler.sample()
    first = timing.first_consumed or started
    seconds = timing.last_closed - first
    client = sampler.client
    memory = client.info("memory")
    lists, by_kind = _redis_breakdown(client)
    keys = int(client.dbsize())
    task = tasks[0]
    return {
        "consumed": stats.consumed,
        "predicted": stats.predicted,
        "invalid": stats.invalid,
        "learned": stats.learned,
        "batches": stats.batches,
        "startup_s": round(first - started, 2),
        "processing_s": round(seconds, 2),
        "shutdown_s": round(returned - timing.last_closed, 2),
        "interactions_per_s": round(timing.consumed / seconds) if seconds > 0 else None,
        "mean_batch": round(float(np.mean(timing.sizes)), 1) if timing.sizes else 0.0,
        "batch_sizes": _size_summary(timing.sizes),
        "stage_us_per_interaction": {
            k: round(v / max(timing.consumed, 1) * 1e6, 1) for k, v in timing.stage_s.items()
        },
        "stage_share_pct": _stage_shares(timing.stage_s, seconds),
        "scores": {k: None if v is None else round(v, 4) for k, v in scores.items()},
        "model": {
            "users": len(task.recommender.histories),
            "items": len(task.recommender.catalogue),
            "version": task.model_version,
            "array_mb": _array_mb(task.recommender),
            "histories_at_max_users_mb": _histories_bound_mb(task.recommender),
        },
        "rss_mb": {
            "start": round(rss_start, 1),
            "first_batch": round(timing.first_batch_rss_mb or float("nan"), 1),
            "end": final["rss_mb"],
            "peak": round(rss_mb("VmHWM"), 1),
            "at_consumed": _milestones(sampler.samples, final, events),
        },
        "redis": {
            "used_memory_mb": round(int(memory["used_memory"]) / 2**20, 1),
            "used_memory_peak_mb": round(int(memory["used_memory_peak"]) / 2**20, 1),
            "recs_lists": lists,
            "keys": keys,
            "mb_by_key_kind": by_kind,
        },
        "memory_samples": _thin(sampler.samples, 60),
    }


def _redis_breakdown(client: Any) -> tuple[int, dict[str, float]]:
    """How many recommendation lists Redis holds, and MiB by kind of key (``MEMORY USAGE``).

    The lists' total is estimated from up to 2 000 of them; every other key is measured.
    """
    recs = f"sl:{PIPELINE}:recs:"
    lists: list[bytes] = []
    others: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for key in client.scan_iter(count=10_000):
        if key.startswith(recs.encode()):
            lists.append(key)
            continue
        name = key.decode(errors="replace")
        kind = name.rsplit(":", 1)[0] if name.count(":") > 2 else name
        others[kind] += int(client.memory_usage(key, samples=0) or 0)
        counts[kind] += 1
    sample = lists[:: max(1, len(lists) // 2_000)]
    per_list = np.mean([client.memory_usage(k) or 0 for k in sample]) if sample else 0.0
    sizes = {f"{recs}* ({len(lists):,} keys, estimated)": float(per_list) * len(lists)}
    sizes |= {f"{k} ({counts[k]} keys)": v for k, v in others.items()}
    mb = {k: round(v / 2**20, 2) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])}
    mb["bytes_per_list"] = round(float(per_list))
    return len(lists), mb


def _stage_shares(stage_s: dict[str, float], seconds: float) -> dict[str, float]:
    """Each stage's share of the processing time; checkpoint saves happen within ``commit``."""
    if seconds <= 0:
        return {}
    shares = {k: round(100 * v / seconds, 1) for k, v in stage_s.items()}
    outer = sum(v for k, v in shares.items() if k != "checkpoint")
    shares["outside stages (poll, batching, hooks)"] = round(100 - outer, 1)
    return shares


def _milestones(
    samples: list[dict[str, float]], final: dict[str, float], events: int
) -> dict[str, dict[str, float] | None]:
    """The first sample at or past each milestone (the final one for the last interaction)."""
    out: dict[str, dict[str, float] | None] = {}
    for mark in [m for m in MILESTONES if m < events] + [events]:
        hit = next((s for s in samples if s["consumed"] >= mark), None)
        if mark == events:
            hit = final
        out[str(mark)] = None if hit is None else dict(hit)
    return out


def _array_mb(recommender: Any) -> dict[str, float]:
    """MiB of numpy arrays held by each part of the model (its bounded state)."""
    parts = {
        "histories": recommender.histories,
        "catalogue": recommender.catalogue,
        "popularity": recommender.popularity,
        "cooccurrence": recommender.cooccurrence,
        "factors": recommender.factors,
    }
    return {
        name: round(
            sum(v.nbytes for v in vars(part).values() if isinstance(v, np.ndarray)) / 2**20, 1
        )
        for name, part in parts.items()
        if part is not None
    }


def _histories_bound_mb(recommender: Any) -> float:
    """MiB the user histories take once ``max_users`` users are held (their memory bound)."""
    histories = recommender.histories
    arrays = [v for v in vars(histories).values() if isinstance(v, np.ndarray)]
    per_user = sum(a.nbytes / max(len(a), 1) for a in arrays)
    return round(per_user * histories.max_users / 2**20, 1)


# --- profile ----------------------------------------------------------------------------------


def profile_summary(path: Path, rate_hz: int) -> dict[str, Any]:
    """The profile summary for the pipeline thread, by recommendation stage (all of them)."""
    return summarise(path, rate_hz, THREAD, STAGES, tops=(len(_STAGE_MARKERS) + 1, 25, 15))


# --- targets and report -----------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Verdicts against issue 8's two targets."""
    e2e = results["end_to_end"]
    rate = e2e["interactions_per_s"] or 0
    at = e2e["rss_mb"]["at_consumed"]
    base, last = at.get(str(MILESTONES[0])), at.get(str(results["stream"]["events"]))
    growth = None
    if base is not None and last is not None and results["stream"]["events"] > MILESTONES[0]:
        growth = round(100.0 * (last["rss_mb"] - base["rss_mb"]) / base["rss_mb"], 1)
    full = results["stream"]["events"] >= MILESTONES[-1]
    return [
        {
            "target": f"≥ {TARGET_PER_S:,} interactions/s from a backlog (10 000 items, K = 10)",
            "measured": f"{rate:,} interactions/s",
            "verdict": "pass" if rate >= TARGET_PER_S else "fail",
        },
        {
            "target": f"RSS growth 100k → 1M interactions ≤ {TARGET_GROWTH_PCT:.0f} %",
            "measured": "n/a"
            if growth is None
            else f"{growth:+.1f} % (100k → {results['stream']['events']:,})",
            "verdict": "n/a"
            if growth is None
            else ("pass" if growth <= TARGET_GROWTH_PCT else "fail")
            + ("" if full else " (not a 1M run)"),
            "growth_pct": growth,
        },
    ]


def markdown(results: dict[str, Any]) -> str:
    """The run as markdown tables."""
    m, e2e, stream = results["machine"], results["end_to_end"], results["stream"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    load_end = ", ".join(f"{x:.2f}" for x in m["load_average_at_end"])
    lines = [
        f"# Live recommendations end to end ({stream['events']:,} interactions)",
        "",
        f"{m['date']} · {m['nproc']} cores · Python {m['python']} · wall time "
        f"{results['wall_seconds']:.0f} s",
        "",
        f"Load average (1, 5, 15 min) at start {load}, at end {load_end}. The 2 cores were "
        "shared with other work during the run, so throughput is a lower bound of what the "
        "machine gives when idle.",
        "",
        f"Reproduce: `{results['command']}`",
        "",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v),
        "",
        f"Stream: `recommendation_events(n, seed={stream['seed']}, users={stream['users']:,}, "
        f"items={stream['items']:,})` as a backlog on a topic of {stream['partitions']} "
        "partitions keyed by user id (embedded Tansu broker, embedded redis-server); the "
        "processor is the real `App` on `streamlearn/tasks/recommendation.yaml` "
        f"({_settings(results['pipeline'])}), each in its own process.",
        "",
        "## Targets (issue #8)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *(f"| {t['target']} | {t['measured']} | **{t['verdict']}** |" for t in results["targets"]),
        "",
        *_throughput(e2e),
        *_memory(e2e),
        *_profile(results.get("profile")),
    ]
    return "\n".join(lines) + "\n"


def _settings(pipeline: dict[str, Any]) -> str:
    r, c = pipeline["recommendation"], pipeline["checkpoint"]
    return (
        f"model {r['model']}, K = {r['k']}, max_users {r['max_users']:,}, max_items "
        f"{r['max_items']:,}, history {r['history_len']}; checkpoint every {c['interval_s']:g} s,"
        f" {c['keep']} kept"
    )


def _throughput(e2e: dict[str, Any]) -> list[str]:
    p, sizes = e2e["produced"], e2e["batch_sizes"]
    scores = e2e["scores"]
    lines = [
        "## Throughput",
        "",
        "| figure | value |",
        "|---|---|",
        f"| produced | {p['messages']:,} in {p['seconds']} s ({p['distinct_users']:,} users, "
        f"{p['distinct_items']:,} items, {p['bytes'] / 2**20:.0f} MiB) |",
        f"| consumed / learned / invalid | {e2e['consumed']:,} / {e2e['learned']:,} / "
        f"{e2e['invalid']:,} |",
        f"| **interactions/s** (first consumed → last batch closed) | "
        f"**{e2e['interactions_per_s']:,}** over {e2e['processing_s']} s |",
        f"| start-up / shutdown | {e2e['startup_s']} s / {e2e['shutdown_s']} s |",
        f"| batches; size mean / min / p50 / max | {e2e['batches']:,}; {e2e['mean_batch']} / "
        f"{sizes.get('min')} / {sizes.get('p50')} / {sizes.get('max')} |",
        f"| prequential hit rate @10 / NDCG @10 (rolling, at the end) | "
        f"{scores.get(f'hit_rate_at_{K}')} / {scores.get(f'ndcg_at_{K}')} |",
        "",
        "Time per interaction by stage of the runner (`PipelineHooks.on_stage`; checkpoint "
        "saves happen within `commit`, and the final one after the last batch is counted "
        "too):",
        "",
        "| stage | µs per interaction | share of processing time |",
        "|---|---|---|",
    ]
    shares = e2e["stage_share_pct"]
    for stage, us in e2e["stage_us_per_interaction"].items():
        lines.append(f"| {stage} | {us} | {shares.get(stage, '')} % |")
    rest = "outside stages (poll, batching, hooks)"
    if rest in shares:
        lines.append(f"| {rest} | | {shares[rest]} % |")
    return [*lines, ""]


def _memory(e2e: dict[str, Any]) -> list[str]:
    rss, redis = e2e["rss_mb"], e2e["redis"]
    lines = [
        "## Memory",
        "",
        "Processor RSS (MiB) as interactions are consumed (first 0.5 s sample at or past each "
        "mark; the last row is after the run returned):",
        "",
        "| consumed | RSS MiB | users held | items held | Redis MiB |",
        "|---|---|---|---|---|",
    ]
    for mark, s in rss["at_consumed"].items():
        if s is None:
            lines.append(f"| {int(mark):,} | - | - | - | - |")
            continue
        lines.append(
            f"| {int(mark):,} | {s['rss_mb']} | {s.get('users', '-'):,} | "
            f"{s.get('items', '-'):,} | {s['redis_mb']} |"
        )
    model = e2e["model"]
    arrays = ", ".join(f"{k} {v}" for k, v in model["array_mb"].items())
    lines += [
        "",
        f"RSS at start {rss['start']} MiB, at the first batch {rss['first_batch']} MiB, "
        f"peak {rss['peak']} MiB. Model arrays at the end (MiB): {arrays}; the user "
        f"histories grow with the users held, up to {model['histories_at_max_users_mb']} MiB "
        "at max_users.",
        "",
        f"Redis at the end: used_memory {redis['used_memory_mb']} MiB (peak "
        f"{redis['used_memory_peak_mb']} MiB), {redis['recs_lists']:,} `sl:recommendation:recs:*`"
        f" lists of {redis['keys']:,} keys. By kind of key (`MEMORY USAGE`, MiB):",
        "",
        "| keys | MiB |",
        "|---|---|",
        *(f"| `{k}` | {v} |" for k, v in redis["mb_by_key_kind"].items() if k != "bytes_per_list"),
        f"| bytes per list | {redis['mb_by_key_kind']['bytes_per_list']} |",
        "",
    ]
    return lines


def _profile(spied: dict[str, Any] | None) -> list[str]:
    if spied is None:
        return []
    lines = [
        "## Where the pipeline thread's time goes (py-spy)",
        "",
        f"A second run sampled by py-spy at {spied['rate_hz']} Hz ("
        f"{spied['interactions_per_s_while_sampled']:,} interactions/s while sampled); "
        "on-CPU seconds by thread: "
        + ", ".join(f"{k} {v}" for k, v in spied["on_cpu_s_by_thread"].items())
        + ".",
        "",
        "| stage (innermost matching frame) | % of pipeline thread samples |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in spied["pipeline_thread_by_stage_pct"].items()),
        "",
        "| function (inclusive) | % |",
        "|---|---|",
        *(f"| `{k}` | {v} |" for k, v in spied["pipeline_thread_inclusive_pct"].items()),
        "",
        "| function (self) | % |",
        "|---|---|",
        *(f"| `{k}` | {v} |" for k, v in spied["pipeline_thread_self_pct"].items()),
        "",
    ]
    return lines


def write(results: dict[str, Any], directory: Path, stem: str | None = None) -> tuple[Path, Path]:
    """Write ``{stem}.json`` and ``.md`` (``recommendation_e2e``) into ``directory``, atomically."""
    return write_results(results, markdown(results), directory, stem or "recommendation_e2e")


if __name__ == "__main__":
    main()
