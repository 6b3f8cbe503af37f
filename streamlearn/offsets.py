"""The one owner of offsets: what the model learned, what a checkpoint covers, what is committed.

Every offset decision goes through :class:`OffsetLedger`, in one order: a batch's outputs are
durable, then it is learned, then a checkpoint of the model is saved covering it, then (and
only then) the consumer group's offsets are committed up to that checkpoint. So the group never
runs ahead of what a saved model has learned, and after a crash reading resumes from the
checkpoint: no event is learned twice or skipped. A rebalance checkpoints and commits before
partitions are given up, and a partition that comes back is read from what the model learned,
never from a position kafka-python kept. Commits never move backwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamlearn.errors import StreamlearnError

TopicPartition = tuple[str, int]
Offsets = dict[TopicPartition, int]

log = logging.getLogger(__name__)


class OffsetPort(Protocol):
    """What the ledger needs of a source."""

    def commit(self, offsets: Offsets) -> None:
        """Commit the next offset to read per partition."""
        ...

    def seek(self, offsets: Offsets) -> None:
        """Read the given partitions next from the given offsets."""
        ...

    def positions(self, partitions: list[TopicPartition]) -> Offsets:
        """The next offset each partition would be read from."""
        ...

    def group_offsets(self, partitions: list[TopicPartition]) -> Offsets:
        """The consumer group's committed offsets of the given partitions (where it has one)."""
        ...


# Saves a checkpoint covering the offsets and the learned count; returns whether it landed.
Save = Callable[[Offsets, int], bool]


@dataclass(frozen=True, slots=True)
class Ticket:
    """A batch in hand: the offsets it ends at, and the ownership it started under."""

    ends: Offsets
    epochs: dict[TopicPartition, int]


class OffsetLedger:
    """Owns learned, checkpointed and committed offsets for one pipeline's source.

    Examples
    --------
    A batch is learned, then saved, then committed; a partition taken away and given back is
    read again from what the model learned, not from where the consumer stood.

    >>> class Source:
    ...     log = []
    ...     def commit(self, offsets): self.log.append(("commit", offsets))
    ...     def seek(self, offsets): self.log.append(("seek", offsets))
    ...     def positions(self, tps): return {tp: 0 for tp in tps}
    ...     def group_offsets(self, tps): return {}
    >>> def save(offsets, learned):
    ...     Source.log.append(("save", dict(offsets), learned)); return True
    >>> ledger, tp = OffsetLedger(Source(), save, due=lambda: True), ("t", 0)
    >>> ledger.assigned([tp]); ledger.resolve({})
    >>> ticket = ledger.begin({tp: 10})
    >>> ledger.learned(ticket, count=10); ledger.settle()
    >>> Source.log
    [('save', {('t', 0): 10}, 10), ('commit', {('t', 0): 10})]
    >>> ticket = ledger.begin({tp: 15})
    >>> ledger.revoked([tp]); ledger.assigned([tp])  # a rebalance while the batch is written
    >>> ledger.owned_rows(ticket, ["t", "t"], [0, 0]).tolist()  # not learned: read again
    [False, False]
    >>> Source.log[-1]
    ('seek', {('t', 0): 10})
    """

    def __init__(
        self,
        source: OffsetPort,
        save: Save | None = None,
        due: Callable[[], bool] = lambda: True,
        name: str = "",
    ) -> None:
        self.source = source
        self.save = save
        self.due = due
        self.name = name
        self.learned_offsets: Offsets = {}  # next offset the in-memory model has to learn
        self.saved: Offsets = {}  # what the newest saved checkpoint covers
        self.committed: Offsets = {}  # the floor: commits never go below it
        self.learned_count = 0
        self.owned: set[TopicPartition] = set()
        self._epochs: dict[TopicPartition, int] = {}
        self._unresolved: set[TopicPartition] = set()
        self._fresh: set[TopicPartition] = set()  # assigned since the last poll
        self._dirty = False
        self._uncommitted = False  # saved during a rebalance, commit still to do

    def restore(self, offsets: Offsets, learned: int) -> None:
        """Start from a restored checkpoint: its offsets are where each partition resumes."""
        self.learned_offsets = dict(offsets)
        self.saved = dict(offsets)
        self.learned_count = learned
        self._dirty = False

    def rollback(self, offsets: Offsets, learned: int) -> None:
        """Adopt an older checkpoint while running: owned partitions are read again from it.

        An owned partition the checkpoint does not cover goes on from what is learned now.
        """
        uncovered = {
            tp: o
            for tp, o in self.learned_offsets.items()
            if tp in self.owned and tp not in offsets
        }
        self.restore({**offsets, **uncovered}, learned)
        offsets = self.learned_offsets
        for tp in self.owned:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1  # a batch in hand is not learned
        self.source.seek({tp: o for tp, o in offsets.items() if tp in self.owned})
        self._dirty = True

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions were assigned (inside the consumer's poll: must not block).

        A partition the model has learned from resumes there; any other is read from the
        group's commit (or the source's start setting), resolved after the poll.
        """
        seeks: Offsets = {}
        for tp in partitions:
            self.owned.add(tp)
            self._fresh.add(tp)
            if tp in self.learned_offsets:
                seeks[tp] = self.learned_offsets[tp]
                if self.learned_offsets[tp] > self.committed.get(tp, -1):
                    # Learned (and maybe checkpointed) while it was away or before it left, but
                    # never committed: the next settle commits it even if nothing more comes.
                    self._uncommitted = True
            else:
                self._unresolved.add(tp)
        if seeks:
            self.source.seek(seeks)

    def resolve(self, first_buffered: Offsets) -> None:
        """After a poll: record where newly assigned, never-learned partitions start.

        The group's commits of new partitions become the floor commits never go below.
        """
        if not self._fresh:
            return
        try:
            floors = self.source.group_offsets(sorted(self._fresh))
        except StreamlearnError as exc:
            log.warning("%s: %s; trying again after the next poll", self.name, exc)
            return
        for tp, offset in floors.items():
            self.committed[tp] = max(self.committed.get(tp, -1), offset)
        self._fresh.clear()
        missing = [tp for tp in self._unresolved if tp not in first_buffered]
        positions = self.source.positions(missing) if missing else {}
        for tp in self._unresolved:
            start = first_buffered.get(tp, positions.get(tp))
            if start is not None:
                self.learned_offsets[tp] = start
                self.committed.setdefault(tp, start)
                self._dirty = True
        self._unresolved.clear()

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions are being taken away: save a checkpoint of what is learned, then let go.

        Called inside the consumer's poll, on kafka-python's network thread, where a blocking
        commit is refused: the checkpoint (which restarts resume from) is saved here and the
        group's commit follows at the next settle, for the partitions still owned then.
        """
        gone = set(partitions)
        self._unresolved -= gone
        self._fresh -= gone
        if gone & self.owned:
            self.settle(force=True, commit=False)
        for tp in gone:
            self.owned.discard(tp)
            self._epochs[tp] = self._epochs.get(tp, 0) + 1

    def begin(self, ends: Offsets) -> Ticket:
        """A batch ending at ``ends`` (next offset per partition) is about to be processed."""
        return Ticket(dict(ends), {tp: self._epochs.get(tp, 0) for tp in ends})

    def still_owned(self, ticket: Ticket) -> set[TopicPartition]:
        """Partitions of the batch held without interruption since it began."""
        return {
            tp
            for tp, epoch in ticket.epochs.items()
            if tp in self.owned and self._epochs.get(tp, 0) == epoch
        }

    def owned_rows(self, ticket: Ticket, topics: list[str], partitions: list[int]) -> np.ndarray:
        """Which rows (by topic and partition) may be learned: their partition stayed ours."""
        keep = self.still_owned(ticket)
        return np.fromiter(
            ((t, p) in keep for t, p in zip(topics, partitions)), dtype=bool, count=len(topics)
        )

    def learned(self, ticket: Ticket, count: int, owned_only: bool = True) -> None:
        """The batch's rows of still-owned partitions were learned (``count`` events).

        ``owned_only=False``: every row of the batch was learned, whatever moved meanwhile
        (learning ran before the write); the marks go with the model into the checkpoint, so
        a partition that comes back is not learned from twice.
        """
        for tp in self.still_owned(ticket) if owned_only else list(ticket.ends):
            end = ticket.ends[tp]
            before = self.learned_offsets.get(tp)
            if before is not None and end < before:
                # Offsets restarted below what was learned: the broker lost the partition's data
                # or the topic was recreated. Learning goes on from the new offsets.
                log.warning(
                    "%s: %s/%d restarted at offset %d below the %d already learned (topic "
                    "recreated or broker data lost); going on from there",
                    self.name,
                    tp[0],
                    tp[1],
                    end,
                    before,
                )
                self.committed[tp] = 0
            self.learned_offsets[tp] = end
        self.learned_count += count
        self._dirty = True

    @property
    def pending(self) -> bool:
        """Whether :meth:`settle` (not forced) would do I/O now: a checkpoint due, a commit owed."""
        if not self._dirty:
            return self._uncommitted
        return self.save is None or self.due()

    def settle(self, force: bool = False, commit: bool = True) -> None:
        """Save a checkpoint if due (or forced), then commit what it covers.

        Without checkpoints the model is not kept across restarts, so commits follow learning.
        """
        if not self._dirty:
            if commit and self._uncommitted:
                self._uncommitted = False
                self._commit(self.saved if self.save is not None else self.learned_offsets)
            return
        if self.save is not None:
            if not (force or self.due()):
                return
            if not self.save(self.learned_offsets, self.learned_count):
                return  # not saved: nothing may be committed past the last checkpoint
            self.saved = dict(self.learned_offsets)
        self._dirty = False
        if commit:
            self._commit(self.learned_offsets)
        else:
            self._uncommitted = True

    def _commit(self, offsets: Offsets) -> None:
        ahead = {
            tp: o
            for tp, o in offsets.items()
            if tp in self.owned and o > self.committed.get(tp, -1)
        }
        if not ahead:
            return
        try:
            self.source.commit(ahead)
        except StreamlearnError as exc:
            # The checkpoint already covers these offsets; a later commit will carry them.
            log.warning("%s: commit failed (%s); the checkpoint covers it", self.name, exc)
            self._uncommitted = True  # tried again at the next settle, even when idle
            return
        self.committed.update(ahead)
