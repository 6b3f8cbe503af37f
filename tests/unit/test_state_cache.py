"""The entity-state read cache: what it serves from memory, and when it reads the store again."""

from streamlearn.aggregate_windows import EntityState
from streamlearn.state_cache import CachedStateStore
from streamlearn.tasks.entity_features import MemoryStateStore


class CountingStore(MemoryStateStore):
    """A store that hands out copies (as Redis does) and counts what it is asked to read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def load(self, entities):
        entities = list(entities)
        self.reads += entities
        return {
            e: EntityState.from_bytes(self.states.get(e, EntityState()).to_bytes())
            for e in entities
        }

    def save(self, states):
        for entity, state in states.items():
            self.states[entity] = EntityState.from_bytes(state.to_bytes())
        return len(states)


def state_on(partition: int, offset: int) -> EntityState:
    state = EntityState()
    state.positions[partition] = offset
    return state


def test_what_was_saved_is_read_from_memory_and_written_through() -> None:
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=60)
    cache.save({"a": state_on(0, 5)})
    assert store.states["a"].positions == {0: 5}  # written through
    assert cache.load(["a", "b"])["a"].positions == {0: 5}
    assert store.reads == ["b"]  # only the unknown entity was read
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_partition_that_moves_drops_its_entities_only() -> None:
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=60)
    cache.save({"a": state_on(0, 5), "b": state_on(1, 9)})
    store.states["a"] = state_on(0, 50)  # another process wrote "a" while it owned partition 0
    cache.moved([("activity", 0)])
    loaded = cache.load(["a", "b"])
    assert loaded["a"].positions == {0: 50}  # the store's, not the stale copy
    assert store.reads == ["a"]


def test_copies_expire_with_the_store_ttl() -> None:
    now = [0.0]
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=10, clock=lambda: now[0])
    cache.save({"a": state_on(0, 1)})
    now[0] = 9.0
    cache.load(["a"])
    assert store.reads == []
    now[0] = 10.5
    cache.load(["a"])
    assert store.reads == ["a"]


def test_the_cache_holds_at_most_capacity_entities_least_recently_used_first_out() -> None:
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=60, capacity=2)
    cache.save({"a": state_on(0, 1), "b": state_on(0, 2)})
    cache.load(["a"])  # "a" is now the most recently used
    cache.save({"c": state_on(0, 3)})
    assert len(cache) == 2
    cache.load(["a", "b", "c"])
    assert store.reads == ["b"]


def test_the_app_tells_the_cache_of_every_rebalance_before_the_runner() -> None:
    from types import SimpleNamespace

    from streamlearn.app import _also_on_moves

    calls: list[tuple[str, list[tuple[str, int]]]] = []
    source = SimpleNamespace(
        on_assign=lambda ps: calls.append(("runner assigned", ps)),
        on_revoke=lambda ps: calls.append(("runner revoked", ps)),
    )
    _also_on_moves(source, lambda ps: calls.append(("cache", ps)))  # type: ignore[arg-type]
    source.on_revoke([("t", 1)])
    source.on_assign([("t", 2)])
    assert calls == [
        ("cache", [("t", 1)]),
        ("runner revoked", [("t", 1)]),
        ("cache", [("t", 2)]),
        ("runner assigned", [("t", 2)]),
    ]


def test_written_behind_states_reach_the_store_at_flush_and_only_then() -> None:
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=60, write_behind=True)
    cache.save({"a": state_on(0, 1)})
    assert "a" not in store.states
    assert cache.load(["a"])["a"].positions == {0: 1}  # served from memory meanwhile
    assert cache.flush() == 1 and store.states["a"].positions == {0: 1}
    assert cache.flush() == 0


def test_a_state_not_yet_written_is_written_before_it_is_evicted() -> None:
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=60, capacity=1, write_behind=True)
    cache.save({"a": state_on(0, 1)})
    cache.save({"b": state_on(0, 2)})  # "a" leaves memory: it is written first
    assert store.states["a"].positions == {0: 1}
    assert len(cache) == 1


def test_a_moved_partition_drops_unwritten_states_too() -> None:
    # Its next owner replays from the committed offsets, which the last flush covers.
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=60, write_behind=True)
    cache.save({"a": state_on(0, 1)})
    cache.moved([("activity", 0)])
    assert cache.load(["a"])["a"].positions == {}
    assert cache.flush() == 0 and "a" not in store.states


def test_an_unwritten_state_does_not_expire_from_memory() -> None:
    now = [0.0]
    store = CountingStore()
    cache = CachedStateStore(store, ttl_s=10, clock=lambda: now[0], write_behind=True)
    cache.save({"a": state_on(0, 1)})
    now[0] = 30.0
    assert cache.load(["a"])["a"].positions == {0: 1}
    assert store.reads == []
