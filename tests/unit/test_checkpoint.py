"""Checkpoints: signed, versioned, refused when unusable, falling back to the previous one."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import pytest

from streamlearn.checkpoint import (
    Checkpoint,
    Checkpointer,
    CheckpointRefused,
    ModelRequests,
    library_versions,
)


class Memory:
    def __init__(self) -> None:
        self.stored: dict[int, dict[str, Any]] = {}
        self.pending: dict[str, bytes] | None = None

    def versions(self) -> list[int]:
        return sorted(self.stored, reverse=True)

    def load(self, version: int) -> Mapping[Any, Any]:
        if version not in self.stored:
            raise CheckpointRefused(f"v{version} is missing")  # as the Redis store does
        return self.stored[version]

    def save(self, checkpoint: Checkpoint, keep: int) -> None:
        self.stored[checkpoint.version] = checkpoint.to_fields()
        for old in self.versions()[keep:]:
            del self.stored[old]

    def request(self) -> dict[str, bytes] | None:
        return self.pending

    def done(self, fields: Mapping[str, bytes]) -> None:
        self.pending = None


def checkpointer(
    store: Memory, box: dict[str, Any], key: bytes | None = b"k", keep: int = 5
) -> Checkpointer:
    return Checkpointer(
        store, lambda: dict(box), box.update, interval_s=0, fingerprint="f", key=key, keep=keep
    )


def saved_twice(key: bytes | None = b"k") -> tuple[Memory, dict[str, Any], Checkpointer]:
    store, box = Memory(), {"w": 1}
    cp = checkpointer(store, box, key)
    cp.save({("t", 0): 10}, learned=10, model_version=1)
    box["w"] = 2
    cp.save({("t", 0): 20}, learned=20, model_version=2)
    box["w"] = 99
    return store, box, cp


def test_the_newest_valid_version_is_restored_with_its_learned_count() -> None:
    _store, box, cp = saved_twice()
    restored = cp.restore()
    assert restored is not None
    assert (restored.checkpoint.version, restored.checkpoint.learned, box["w"]) == (2, 20, 2)
    assert restored.checkpoint.libraries == library_versions()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: {**f, "state": f["state"] + b"x"}, "signature does not match"),
        (lambda f: {**f, "signature": b""}, "not signed"),
        (lambda f: {**f, "meta": b"\xff garbage"}, "not JSON"),
        (lambda f: {**f, "meta": b'{"version": 2}'}, "incomplete"),
        (lambda f: {"unrelated": b"1"}, "fields missing"),
    ],
)
def test_a_damaged_newest_version_is_refused_and_the_previous_used(
    damage: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, box, cp = saved_twice()
    store.stored[2] = damage(store.stored[2])
    restored = cp.restore()
    assert restored is not None
    assert restored.checkpoint.version == 1 and box["w"] == 1
    assert reason in restored.refused[0]
    assert reason in caplog.text


def test_an_unloadable_state_is_refused_even_when_signed() -> None:
    # A pickle of a class that no longer exists (a library upgrade, say), signed correctly.
    store, box = Memory(), {"w": 1}
    cp = checkpointer(store, box)
    cp.save({}, learned=0, model_version=0)
    good = Checkpoint.from_fields(store.stored[1])
    broken = pickle.dumps(good)[:20]  # truncated: unpickling raises
    forged = Checkpoint(
        version=2,
        created=0.0,
        learned=5,
        model_version=1,
        offsets={},
        state=broken,
        fingerprint="f",
    ).signed(b"k")
    store.stored[2] = forged.to_fields()
    restored = cp.restore()
    assert restored is not None and restored.checkpoint.version == 1
    assert "cannot be loaded" in restored.refused[0]


def test_another_configuration_is_not_restored() -> None:
    store, box, _ = saved_twice()
    other = Checkpointer(store, dict, box.update, 0, fingerprint="other", key=b"k")
    assert other.restore() is None
    assert box["w"] == 99


def test_without_a_key_checkpoints_are_unsigned_and_still_restore() -> None:
    store, _box, cp = saved_twice(key=None)
    assert store.stored[2]["signature"] == b""
    restored = cp.restore()
    assert restored is not None and restored.checkpoint.version == 2


def test_a_signed_checkpoint_under_another_key_is_refused() -> None:
    store, box, _ = saved_twice(key=b"old")
    assert checkpointer(store, box, key=b"new").restore() is None


def test_only_the_last_keep_versions_are_kept() -> None:
    store, box = Memory(), {"w": 1}
    cp = checkpointer(store, box, keep=3)
    for i in range(6):
        cp.save({("t", 0): i}, learned=i, model_version=i)
    assert store.versions() == [6, 5, 4]


def test_rollback_and_import_requests_load_the_model_and_are_cleared() -> None:
    store, box, cp = saved_twice()
    requests = ModelRequests(cp, store, interval_s=0)
    assert requests.poll() is None
    store.pending = {"action": b"rollback", "version": b"1"}
    adopted = requests.poll()
    assert adopted is not None and adopted.version == 1 and box["w"] == 1
    assert store.pending is None
    exported = dict(store.stored[2])
    store.pending = {"action": b"import", **exported}
    adopted = requests.poll()
    assert adopted is not None and adopted.learned == 20 and box["w"] == 2


def test_a_refused_request_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    store, _box, cp = saved_twice()
    requests = ModelRequests(cp, store, interval_s=0)
    store.pending = {"action": b"rollback", "version": b"7"}
    assert requests.poll() is None and store.pending is None
    assert "v7 is missing" in caplog.text
    store.pending = {"action": b"explode"}
    assert requests.poll() is None and store.pending is None
    assert "unknown action" in caplog.text


def test_from_fields_refuses_bad_types() -> None:
    with pytest.raises(CheckpointRefused):
        Checkpoint.from_fields({"meta": b'{"version": "x", "created": 1}', "state": b""})
