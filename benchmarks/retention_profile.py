"""Summarises a py-spy profile (``--format raw --threads``) of the processor: where time goes.

Each line of the raw format is one distinct stack, root first, frames separated by ``;``, the
thread first, then a space and the number of samples. py-spy samples only threads that are
running (not waiting on a socket or a lock), so a thread's sample count over the sampling rate
is its on-CPU time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_LINE = re.compile(r" \(([^()]*?)(?::\d+)?\)$")

# Where the pipeline thread's time goes, by the first of these frames found in a stack (the
# innermost match wins, so e.g. JSON decoding inside the label store counts as the label store).
STAGES: tuple[tuple[str, str], ...] = (
    ("aggregates (Aggregator.apply)", "streamlearn/aggregates.py"),
    ("aggregate state load (Redis)", "AggregateStore.load"),
    ("aggregate state save (Redis)", "AggregateStore.save"),
    ("label store exchange (Redis)", "RedisLabelStore.exchange"),
    ("predictions write (Redis)", "PredictionStore"),
    ("pending payloads", "DelayedLabels.pending"),
    ("joined events decoded", "DelayedLabels.learnable"),
    ("decode (events and labels)", "DelayedLabels.decode"),
    ("featurize", "Featurizer.transform"),
    ("model predict", "predict_proba"),
    ("model learn", "BatchModel.learn"),
    ("model learn", "SklearnModel.learn"),
    ("evaluation", "PrequentialEvaluator"),
    ("drift detector", "ClassErrorDrift"),
    ("checkpoint", "Checkpointer"),
    ("Kafka poll", "KafkaSource.poll"),
    ("Kafka commit", "KafkaSource.commit"),
    ("Kafka produce / flush", "KafkaSink"),
)


def _frame(text: str) -> str:
    """``func (file:line)`` without the line number."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", text.strip())


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    """``(thread name, frames root first, samples)`` per line of a raw py-spy profile."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        name = thread.split(": ", 1)[1] if ": " in thread else thread
        out.append((name.strip(), [_frame(f) for f in frames], int(count)))
    return out


def summarise(
    path: Path,
    rate_hz: int,
    thread: str = "pipeline-retention",
    stages: Sequence[tuple[str, str]] = STAGES,
    *,
    tops: tuple[int, int, int] = (20, 25, 15),
    digits: int = 1,
    min_thread_s: float = 0.1,
) -> dict[str, Any]:
    """On-CPU seconds per thread, and ``thread``'s time by stage, inclusive and by function.

    ``stages`` are ``(stage, marker)`` pairs (see :func:`stage_of`); ``tops`` how many stages,
    inclusive frames and own frames to list; threads on CPU less than ``min_thread_s`` are left
    out and the others rounded to ``digits``.
    """
    stacks = parse(path)
    per_thread: Counter[str] = Counter()
    for name, _, n in stacks:
        per_thread[name] += n
    mine = [(frames, n) for name, frames, n in stacks if name == thread]
    total = sum(n for _, n in mine) or 1
    by_stage: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, n in mine:
        by_stage[stage_of(frames, stages)] += n
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    top_stages, top_inclusive, top_own = tops
    return {
        "rate_hz": rate_hz,
        "pipeline_thread_samples": total,
        "on_cpu_s_by_thread": {
            k: round(v / rate_hz, digits)
            for k, v in per_thread.most_common(8)
            if v / rate_hz >= min_thread_s
        },
        "pipeline_thread_by_stage_pct": _shares(by_stage, total, top_stages),
        "pipeline_thread_inclusive_pct": _shares(inclusive, total, top_inclusive, floor=3.0),
        "pipeline_thread_self_pct": _shares(own, total, top_own, floor=1.0),
    }


def stage_of(frames: list[str], stages: Sequence[tuple[str, str]] = STAGES) -> str:
    """The stage of one stack (frames root first): the first stage whose marker the innermost
    frame holds, else the next frame out, and so on; ``other`` when none does.

    >>> stage_of(["run (streamlearn/runner.py)", "KafkaSource.poll (connectors/kafka.py)"])
    'Kafka poll'
    >>> stage_of(["f (x.py)"])
    'other'
    """
    for frame in reversed(frames):
        for name, marker in stages:
            if marker in frame:
                return name
    return "other"


def _shares(counts: Counter[str], total: int, top: int, floor: float = 0.0) -> dict[str, float]:
    shares = {k: round(100.0 * v / total, 1) for k, v in counts.most_common(top)}
    return {k: v for k, v in shares.items() if v >= floor}
