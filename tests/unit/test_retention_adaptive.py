"""The retention benchmark's adaptive replay: the real runner on a simulated clock."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.retention_adaptive import Arrival, replay_adaptive
from benchmarks.retention_replay import replay
from benchmarks.retention_stream import Message, StreamSpec, build_stream, pipeline_dict
from streamlearn.config import PipelineConfig


@pytest.fixture(scope="module")
def stream() -> list[Message]:
    return build_stream(StreamSpec(seed=3, customers=100, events=4_000))


def test_fixed_bounds_from_a_backlog_cut_the_stream_as_the_fixed_replay(
    stream: list[Message],
) -> None:
    # With min = max the runner closes every batch at that size: the same batches, the same
    # scores served, as the fixed-size replay.
    fixed = PipelineConfig.model_validate(pipeline_dict(min_size=64, max_size=64))
    adaptive, chosen = replay_adaptive(stream, Arrival("backlog"), config=fixed)
    reference = replay(stream, batch_size=64)
    a, r = adaptive.arrays(), reference.arrays()
    assert len(a["index"]) > 100
    assert np.array_equal(a["index"], r["index"])
    assert np.array_equal(a["served"], r["served"])
    assert chosen["max"] == 64 and sum(chosen["triggers"].values()) == chosen["batches"]


def test_backlog_runs_at_max_size_and_a_steady_rate_at_the_wait(stream: list[Message]) -> None:
    _, backlog = replay_adaptive(stream, Arrival("backlog"))
    assert backlog["p50"] == 2048
    replayed, steady = replay_adaptive(stream, Arrival("steady", 2000.0))
    # About 2 400 messages/s (labels too) filling for max_wait_ms (50 ms): ~120 a batch.
    assert 100 <= steady["p50"] <= 125
    assert replayed.messages == len(stream)
    assert steady["simulated_s"] == pytest.approx(replayed.events / 2000.0, rel=0.05)
