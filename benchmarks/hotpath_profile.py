"""Where the engine's time goes on the fraud hot path, from a py-spy profile of the (d) process.

The profile is py-spy's raw format (``--format raw --threads``, parsed by
:func:`benchmarks.retention_profile.parse`). The pipeline thread's samples are put into stages
by the innermost frame that names one; py-spy samples only running threads, so per-thread
sample counts over the rate are on-CPU seconds (the kafka-python I/O thread competes for the
GIL with the pipeline thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import retention_profile

THREAD = "pipeline-fraud"

# (stage, marker): a stack belongs to the first stage whose marker its innermost frame holds,
# else the next frame out, and so on.
STAGES: tuple[tuple[str, str], ...] = (
    ("Kafka record parsing (connectors.kafka_records)", "connectors/kafka_records.py"),
    ("Kafka record parsing (kafka-python)", "kafka/record/"),
    ("Kafka record parsing (kafka-python)", "Fetcher.PartitionRecords"),
    ("Kafka fetch bookkeeping (kafka-python)", "kafka/consumer/"),
    ("Kafka fetch bookkeeping (kafka-python)", "kafka/coordinator/"),
    ("Kafka poll into columns (streamlearn)", "KafkaSource.poll"),
    ("Kafka poll into columns (streamlearn)", "_columns (connectors/kafka.py)"),
    ("decode JSON → columns", "EventDecoder"),
    ("reason codes (explain)", "explain (streamlearn/"),
    ("reason codes (explain)", "streamlearn/reasons.py"),
    ("featurize", "Featurizer"),
    ("model predict", "predict_proba"),
    ("model learn", "partial_fit"),
    ("model learn", "SklearnModel.learn"),
    ("predictions write (Redis script)", "PredictionStore"),
    ("outputs (other)", "connectors/outputs.py"),
    ("evaluation", "PrequentialEvaluator"),
    ("drift detector", "ClassErrorDrift"),
    ("drift detector", "DriftMonitor"),
    ("checkpoint", "Checkpointer"),
    ("commit and offsets", "KafkaSource.commit"),
    ("commit and offsets", "OffsetLedger"),
    ("score (other)", "ClassificationTask.score"),
    ("learn (other)", "ClassificationTask.learn"),
    ("batcher", "AdaptiveBatcher"),
    ("hooks and metrics", "hooks.py"),
    ("hooks and metrics", "connectors/prometheus"),
    ("runner (other)", "streamlearn/runner.py"),
)


def stage_of(frames: list[str]) -> str:
    """The stage of one stack (frames root first).

    >>> stage_of(["PipelineRunner.run (streamlearn/runner.py)", "KafkaSource.poll (c/kafka.py)",
    ...           "DefaultRecordBatch._read_msg (kafka/record/default_records.py)"])
    'Kafka record parsing (kafka-python)'
    >>> stage_of(["PipelineRunner.run (streamlearn/runner.py)"]), stage_of(["f (x.py)"])
    ('runner (other)', 'other')
    """
    return retention_profile.stage_of(frames, STAGES)


def summarise(path: Path, rate_hz: int, seconds: float | None = None) -> dict[str, Any]:
    """On-CPU seconds per thread; the pipeline thread's time by stage, inclusive and self."""
    summary = retention_profile.summarise(
        path, rate_hz, THREAD, STAGES, tops=(30, 40, 20), digits=2, min_thread_s=0.05
    )
    if seconds:
        total = summary["pipeline_thread_samples"]
        summary["pipeline_thread_on_cpu_share_of_run"] = round(total / rate_hz / seconds, 2)
    return summary
