"""The offset ledger: save before commit, never backwards, checkpoint on revoke, resets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlearn.errors import PipelineFenced, StreamlearnError
from streamlearn.offsets import OffsetLedger, Offsets

T0, T1 = ("t", 0), ("t", 1)


class Source:
    def __init__(self, group: Offsets | None = None) -> None:
        self.log: list[tuple[str, Any]] = []
        self.group = dict(group or {})
        self.fail_commits = 0

    def commit(self, offsets: Offsets) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise StreamlearnError("rebalance in progress")
        self.log.append(("commit", dict(offsets)))
        self.group.update(offsets)

    def seek(self, offsets: Offsets) -> None:
        self.log.append(("seek", dict(offsets)))

    def positions(self, partitions: list[tuple[str, int]]) -> Offsets:
        return {tp: self.group.get(tp, 0) for tp in partitions}

    def group_offsets(self, partitions: list[tuple[str, int]]) -> Offsets:
        return {tp: self.group[tp] for tp in partitions if tp in self.group}


class Saves:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.ok = True
        self.due = False
        self.saved: list[tuple[Offsets, int]] = []

    def __call__(self, offsets: Offsets, learned: int) -> bool:
        if self.ok:
            self.saved.append((dict(offsets), learned))
            self.source.log.append(("save", dict(offsets)))
        return self.ok


def ledger(group: Offsets | None = None) -> tuple[OffsetLedger, Source, Saves]:
    source = Source(group)
    saves = Saves(source)
    led = OffsetLedger(source, saves, due=lambda: saves.due, name="fraud")
    led.assigned([T0, T1])
    led.resolve({})
    return led, source, saves


def test_nothing_is_committed_until_a_checkpoint_covers_it() -> None:
    led, source, saves = ledger()
    led.learned(led.begin({T0: 10}), count=10)
    led.settle()
    assert source.log == []  # not due: the group's commit stays where the last checkpoint is
    saves.due = True
    led.settle()
    assert source.log == [("save", {T0: 10, T1: 0}), ("commit", {T0: 10})]


def test_a_failed_save_commits_nothing_and_the_next_one_carries_it() -> None:
    led, source, saves = ledger()
    saves.ok, saves.due = False, True
    led.learned(led.begin({T0: 10}), count=10)
    led.settle()
    assert source.log == []
    saves.ok = True
    led.settle()
    assert source.log[-1] == ("commit", {T0: 10})


def test_a_failed_commit_is_carried_by_the_next_and_learning_stays_exact() -> None:
    led, source, saves = ledger()
    saves.due = True
    source.fail_commits = 1
    led.learned(led.begin({T0: 10}), count=10)
    led.settle()
    assert saves.saved[-1] == ({T0: 10, T1: 0}, 10)  # the checkpoint is what restarts use
    led.learned(led.begin({T0: 12}), count=2)
    led.settle()
    assert source.log[-1] == ("commit", {T0: 12})


def test_commits_never_go_below_the_groups_commit() -> None:
    # Restored from an older checkpoint than the group's commit: re-learn from it, but the
    # group's commit only moves once learning has passed it.
    led, source, saves = ledger(group={T0: 50})
    led.restore({T0: 20}, learned=20)
    saves.due = True
    led.learned(led.begin({T0: 30}), count=10)
    led.settle()
    assert ("commit", {T0: 30}) not in source.log
    led.learned(led.begin({T0: 60}), count=30)
    led.settle()
    assert source.log[-1] == ("commit", {T0: 60})


def test_revoke_saves_before_letting_go_and_commits_after_the_poll() -> None:
    # kafka-python runs rebalance callbacks on its network thread, where a commit would block:
    # the checkpoint is saved there, the commit follows at the next settle.
    led, source, _ = ledger()
    led.learned(led.begin({T0: 10, T1: 4}), count=14)
    led.revoked([T1])
    assert source.log == [("save", {T0: 10, T1: 4})]
    assert led.owned == {T0}
    led.settle()
    assert source.log[-1] == ("commit", {T0: 10})
    # Given back: read from what was learned, whatever position the consumer kept.
    led.assigned([T1])
    assert source.log[-1] == ("seek", {T1: 4})


def test_a_batch_whose_partition_moved_is_not_learned_for_that_partition() -> None:
    led, _, _ = ledger()
    ticket = led.begin({T0: 10, T1: 5})
    led.revoked([T1])
    led.assigned([T1])
    assert led.still_owned(ticket) == {T0}
    assert led.owned_rows(ticket, ["t", "t", "t"], [0, 1, 0]).tolist() == [True, False, True]
    led.learned(ticket, count=8)
    assert led.learned_offsets[T1] == 0  # partition 1 resumes from its old offset


def test_offsets_that_restart_below_the_learned_ones_are_followed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    led, source, saves = ledger()
    saves.due = True
    led.learned(led.begin({T0: 500}), count=500)
    led.settle()
    led.learned(led.begin({T0: 20}), count=20)  # the broker lost its data; topic recreated
    led.settle()
    assert "restarted at offset 20" in caplog.text
    assert source.log[-1] == ("commit", {T0: 20})


def test_rollback_seeks_owned_partitions_to_the_checkpoint() -> None:
    led, source, _ = ledger()
    led.learned(led.begin({T0: 100, T1: 90}), count=190)
    ticket = led.begin({T0: 120})
    led.rollback({T0: 40}, learned=40)
    assert source.log[-1] == ("seek", {T0: 40, T1: 90})
    assert led.still_owned(ticket) == set()  # the batch in hand is not learned
    assert led.learned_count == 40


def test_fencing_errors_propagate() -> None:
    source = Source()

    def fenced(offsets: Offsets, learned: int) -> bool:
        raise PipelineFenced("taken over")

    led = OffsetLedger(source, fenced, due=lambda: True)
    led.assigned([T0])
    led.resolve({})
    led.learned(led.begin({T0: 1}), count=1)
    with pytest.raises(PipelineFenced):
        led.settle()
    assert source.log == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["batch", "revoke", "assign", "save_fails", "save_ok", "commit_fails"]),
            st.integers(0, 1),
            st.integers(1, 20),
        ),
        max_size=40,
    )
)
def test_commits_move_forward_and_never_pass_a_saved_checkpoint(ops: list[Any]) -> None:
    led, source, saves = ledger()
    saves.due = True
    position = {T0: 0, T1: 0}
    for op, p, n in ops:
        tp = ("t", p)
        if op == "batch" and tp in led.owned:
            position[tp] = led.learned_offsets.get(tp, position[tp]) + n
            led.learned(led.begin({tp: position[tp]}), count=n)
            led.settle()
        elif op == "revoke":
            led.revoked([tp])
        elif op == "assign":
            led.assigned([tp])
            led.resolve({})
        elif op == "save_fails":
            saves.ok = False
        elif op == "save_ok":
            saves.ok = True
        elif op == "commit_fails":
            source.fail_commits = 1
    last: Offsets = {}
    saved_so_far: Offsets = {}
    for kind, offsets in source.log:
        if kind == "save":
            saved_so_far = offsets
        if kind == "commit":
            for tp, o in offsets.items():
                assert o > last.get(tp, -1)
                assert o <= saved_so_far[tp]
                last[tp] = o


def test_a_partition_back_with_nothing_left_to_learn_is_still_committed() -> None:
    # Seen in the rebalance storm: the last checkpoint was saved as the partition was taken
    # away (its commit deferred), it came back with the stream already learned, and no commit
    # ever followed, so the group stayed half a stream behind the checkpoint.
    led, source, saves = ledger()
    saves.due = True
    led.learned(led.begin({T1: 10}), count=10)
    led.revoked([T1])
    led.settle()
    assert source.group.get(T1) is None  # not owned: not committed
    led.assigned([T1])
    led.resolve({})
    assert led.pending
    led.settle()  # idle: nothing new was learned
    assert source.group[T1] == 10
    assert not led.pending
