"""(c) The per-event job as a Quix Streams app, run in a virtual environment of its own.

Quix Streams (confluent-kafka underneath) is not a dependency of this project, so the app runs
under another interpreter (``HOTPATH_QUIX_PYTHON``, default ``/tmp/quixenv/bin/python``), made
with::

    python3 -m venv /tmp/quixenv
    /tmp/quixenv/bin/pip install quixstreams river redis hiredis orjson

The parent calls :func:`run_quix`; the app itself is :func:`main`, started as
``python -m benchmarks.hotpath_quix`` from the repository root, and imports nothing of
streamlearn (only :mod:`benchmarks.hotpath_river`, which the loop (b) shares). The app is Quix's
defaults: a JSON value deserializer, at-least-once, commits every 5 s (``commit_interval``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the app's interpreter holds no streamlearn: import nothing of it at run time
    from benchmarks.hotpath_child import Read

DEFAULT_PYTHON = "/tmp/quixenv/bin/python"
ROOT = Path(__file__).resolve().parent.parent


def quix_python() -> str | None:
    """The interpreter holding quixstreams, or None when there is none to run."""
    python = os.environ.get("HOTPATH_QUIX_PYTHON", DEFAULT_PYTHON)
    return python if Path(python).exists() else None


def run_quix(read: Read) -> dict[str, Any]:
    """Run the Quix app over ``read`` in its own process; its figures, or why it was skipped."""
    python = quix_python()
    if python is None:
        return {"skipped": f"no Quix Streams interpreter at {DEFAULT_PYTHON} ({__doc__})"}
    check = subprocess.run(
        [python, "-c", "import quixstreams, river, redis, orjson; print(quixstreams.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check.returncode != 0:
        return {"skipped": f"quixstreams does not import under {python}: {check.stderr[-500:]}"}
    with tempfile.TemporaryDirectory(prefix="hotpath-quix-") as tmp:
        out = Path(tmp) / "result.json"
        command = [python, "-m", "benchmarks.hotpath_quix", "--out", str(out), "--state", tmp]
        command += ["--bootstrap", read.bootstrap, "--redis-url", read.redis_url]
        command += ["--topic", read.topic, "--group", read.group, "--events", str(read.events)]
        command += ["--timeout", str(read.timeout_s)]
        try:
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=read.timeout_s + 60
            )
        except subprocess.TimeoutExpired:
            return {"skipped": f"the Quix app gave no answer within {read.timeout_s + 60:.0f} s"}
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout)[-1500:]
            return {"skipped": f"the Quix app failed (exit {done.returncode}): {tail}"}
        import orjson

        figures: dict[str, Any] = orjson.loads(out.read_bytes())
    figures["quixstreams"] = check.stdout.strip()
    figures["scores"] = np.asarray(figures["scores"], dtype=np.float64)
    figures["labels"] = np.asarray(figures["labels"], dtype=np.int8)
    return figures


def main(argv: list[str] | None = None) -> None:
    """The Quix app: read the topic from the beginning, run the per-event job, then stop."""
    import threading

    import orjson
    import redis
    from quixstreams import Application

    from benchmarks.hotpath_river import PerEventJob

    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath_quix")
    for name in ("--bootstrap", "--redis-url", "--topic", "--group", "--out", "--state"):
        parser.add_argument(name, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    job = PerEventJob(redis.Redis.from_url(args.redis_url), pipeline=args.group)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state,
        loglevel="WARNING",
    )
    sdf = app.dataframe(app.topic(args.topic, value_deserializer="json"))
    began = time.monotonic()
    clock: dict[str, float] = {}

    def process(event: dict[str, Any]) -> None:
        if "first" not in clock:
            clock["first"] = time.monotonic()
        job(event)
        clock["last"] = time.monotonic()
        if len(job.scores) >= args.events:
            app.stop()

    sdf.update(process)
    watchdog = threading.Timer(args.timeout, app.stop)
    watchdog.daemon = True
    watchdog.start()
    app.run()
    watchdog.cancel()
    n = len(job.scores)
    first = clock.get("first", began)
    seconds = clock.get("last", first) - first
    result = {
        "events": n,
        "startup_s": round(first - began, 2),
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1) if seconds > 0 else None,
        "commit": "Quix default: every 5 s (commit_interval), at-least-once",
        "scores": job.scores,
        "labels": job.labels,
    }
    Path(args.out).write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
