"""Hostile messages of every kind, mixed with valid fraud events: decoding never raises.

Each hostile message must be rejected with a reason and a short detail; each valid event around
it must come through with its own id, in order. The strategies here also feed the integration
test of the same name, which sends such messages through the real broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlearn.config import SchemaConfig
from streamlearn.decoding import EventDecoder
from streamlearn.generators.fraud import FIELD_TYPES, FraudGenerator

MIB = 2**20
# Room for megabyte payloads, so they reach the parser rather than stop at the size check.
LIMIT = MIB + 64 * 1024
SCHEMA = SchemaConfig.model_validate(
    {"target": "is_fraud", "features": FIELD_TYPES, "max_event_bytes": LIMIT}
)
DECODER = EventDecoder(SCHEMA)
MAX_DETAIL = 300

REQUIRED = ["event_id", "entity_id", "ts", *FIELD_TYPES]
SCHEMA_FIELDS = [*REQUIRED, "is_fraud"]
EVENTS = list(FraudGenerator(seed=11).events(256))
SLOT = "@@slot@@"


@dataclass(frozen=True)
class Message:
    """One raw message value; ``event_id`` is what decoding must yield, None if it must reject."""

    label: str
    value: bytes | None = field(repr=False)
    event_id: str | None = None


def put(event: dict[str, Any], name: str, literal: bytes) -> bytes:
    """``event`` as JSON with the value of field ``name`` replaced by the raw text ``literal``."""
    return orjson.dumps({**event, name: SLOT}).replace(b'"' + SLOT.encode() + b'"', literal, 1)


def append(event: dict[str, Any], text: bytes) -> bytes:
    """``event`` as JSON with ``text`` (``"key":value``) added as its last member."""
    return orjson.dumps(event)[:-1] + b"," + text + b"}"


def nested(depth: int, kind: str) -> bytes:
    """A JSON value ``depth`` levels deep: lists in lists, or objects each holding the next."""
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def hostile(
    make: Callable[..., bytes | None], label: str, *parts: st.SearchStrategy[Any]
) -> st.SearchStrategy[Message]:
    """Messages that must be rejected, built by ``make`` from ``parts`` and labelled for reports."""
    return st.tuples(*parts).map(lambda drawn: Message(label.format(*drawn), make(*drawn)))


events = st.sampled_from(EVENTS)
schema_fields = st.sampled_from(SCHEMA_FIELDS)
any_fields = st.sampled_from([*SCHEMA_FIELDS, "note"])
# Nesting everywhere from below orjson's limit (1024) to far past it, often right around it.
depths = st.one_of(st.integers(900, 1100), st.integers(900, 100_000))

# Values of the wrong type for each field (bools are numbers, and ints are ids, by design).
_WRONG_ID = [b"true", b"1.5", b"null", b"[]", b'["e1"]', b"{}", b'{"id":1}', b'""']
_WRONG_NUMBER = [b'"1.5"', b'"1700000000000"', b"null", b"[1]", b'{"v":1}', b'""']
_WRONG_INT = [b"1.5", b"1.0", b'"1"', b"null", b"[1]", b"{}", b"-0.5"]
_WRONG_CATEGORY = [b"true", b"false", b"1.5", b"null", b'["web"]', b'{"c":"web"}']
_WRONG_TARGET = [b"2", b"-1", b"0.5", b'"1"', b'"yes"', b"[]", b"{}", b"1e3"]
WRONG: dict[str, list[bytes]] = {
    "event_id": _WRONG_ID,
    "entity_id": _WRONG_ID,
    "ts": [*_WRONG_NUMBER, b"-1", b"1e300", b"-0.5e3"],
    **{
        name: {"float": _WRONG_NUMBER, "int": _WRONG_INT, "category": _WRONG_CATEGORY}[kind]
        for name, kind in FIELD_TYPES.items()
    },
    "is_fraud": _WRONG_TARGET,
}
wrong_values = schema_fields.flatmap(
    lambda name: st.tuples(st.just(name), st.sampled_from(WRONG[name]))
)

BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82"]
LONE_SURROGATES = [b"\\ud800", b"\\udfff", b"\\udc00\\ud800", b"a\\ud83d", b"\\ud83dx"]
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"-NaN", b"[1,NaN]", b'{"x":Infinity}']
HUGE_FLOATS = [b"1e400", b"-1e400", b"1e309", b"2.5E+999", b"-0.1e100000", b"1" * 400 + b".5"]
DEGENERATE: list[bytes | None] = [
    None, b"", b"null", b"true", b"false", b"0", b"-1.5", b'"text"', b"[]", b"{}", b" ", b"\n",
    b"\x00", b"{", b"}", b"[", b'{"event_id"', b"\xef\xbb\xbf{}",
]  # fmt: skip


def _big_int(bits: int, offset: int, negative: bool) -> bytes:
    return b"%d" % ((-1 if negative else 1) * (2 ** (bits - 1) + offset))


MEGABYTE_KINDS = ["list", "brackets", "bad_utf8", "nan_at_end", "wrong_type", "cut", "oversized"]


def megabyte(kind: str, event: dict[str, Any]) -> bytes:
    """About a megabyte that must be rejected (``oversized``: just past the size limit)."""
    pad = "x" * MIB
    if kind == "list":
        return b"[" + b",".join([b'"' + b"x" * 1024 + b'"'] * 1000) + b"]"
    if kind == "brackets":
        return b"[" * MIB
    if kind == "bad_utf8":
        return b"\xff" * MIB
    if kind == "nan_at_end":
        return append({**event, "pad": pad}, b'"z":NaN')
    if kind == "wrong_type":
        return put({**event, "pad": pad}, "amount", b'"12.5"')
    if kind == "cut":
        return orjson.dumps({**event, "pad": pad})[:-1]
    return orjson.dumps({**event, "pad": "x" * LIMIT})


kinds = st.sampled_from(["list", "object"])
# One strategy per kind of hostility, the megabyte payloads last.
HOSTILE_KINDS = [
    hostile(nested, "{1} nested {0} deep", depths, kinds),
    hostile(
        lambda ev, name, depth, kind: put(ev, name, nested(depth, kind)),
        "{1} holds a {3} nested {2} deep",
        *(events, schema_fields, depths, kinds),
    ),
    hostile(put, "{1} = {2!r}", events, any_fields, st.sampled_from(HUGE_FLOATS + NON_FINITE)),
    hostile(
        lambda ev, name, bits, offset, negative: put(ev, name, _big_int(bits, offset, negative)),
        "{1} = a {2}-bit integer",
        *(events, schema_fields, st.integers(66, 5000), st.integers(0, 2**32), st.booleans()),
    ),
    hostile(
        lambda ev, ts: put(ev, "ts", b"%d" % ts), "ts = {1}", events, st.integers(2**53 + 1, 2**64)
    ),
    hostile(lambda ev, wrong: put(ev, *wrong), "{1[0]} = {1[1]!r}", events, wrong_values),
    hostile(
        lambda ev, wrong: append(ev, b'"%s":%s' % (wrong[0].encode(), wrong[1])),
        "{1[0]} again, = {1[1]!r}",
        *(events, wrong_values),
    ),
    hostile(
        lambda ev, name: orjson.dumps({k: v for k, v in ev.items() if k != name}),
        "missing {1}",
        *(events, st.sampled_from(REQUIRED)),
    ),
    hostile(
        lambda ev, name, text: put(ev, name, b'"ok' + text + b'"'),
        "{1} holds {2!r}",
        *(events, any_fields, st.sampled_from(LONE_SURROGATES + BAD_UTF8)),
    ),
    hostile(
        lambda ev, text: append(ev, b'"' + text + b'":1'),
        "a key holds {1!r}",
        *(events, st.sampled_from(LONE_SURROGATES + BAD_UTF8)),
    ),
    hostile(lambda value: value, "{0!r}", st.sampled_from(DEGENERATE)),
    hostile(lambda ev, cut: orjson.dumps(ev)[:cut], "cut at {1}", events, st.integers(1, 150)),
    hostile(
        lambda ev, tail: orjson.dumps(ev) + tail,
        "followed by {1!r}",
        *(events, st.sampled_from([b"x", b"{}", b",", b"\x00", b"\xff"])),
    ),
    hostile(megabyte, "a megabyte: {0}", st.sampled_from(MEGABYTE_KINDS), events),
]
HOSTILE = st.one_of(HOSTILE_KINDS)


def _valid(event: dict[str, Any], variant: str) -> Message:
    event_id = str(event["event_id"])
    if variant == "unlabelled":
        value = orjson.dumps({k: v for k, v in event.items() if k != "is_fraud"})
    elif variant == "null_target":
        value = orjson.dumps({**event, "is_fraud": None})
    elif variant == "int_id":
        value, event_id = put(event, "event_id", b"18446744073709551615"), "18446744073709551615"
    elif variant == "duplicate":  # the last of duplicate keys wins, as in Python's json
        value, event_id = append(event, b'"event_id":"dup"'), "dup"
    elif variant == "unicode":
        value = orjson.dumps({**event, "channel": "w\u00e9b \U0001f680", "note": "\U0001f600"})
    elif variant == "shallow_extra":
        value = append(event, b'"extra":' + nested(500, "list"))
    elif variant == "megabyte":
        value = orjson.dumps({**event, "pad": "x" * MIB})
    else:
        value = orjson.dumps(event)
    return Message(f"valid {variant}", value, event_id)


VARIANTS = [
    "plain", "unlabelled", "null_target", "int_id", "duplicate", "unicode", "shallow_extra",
    "megabyte",
]  # fmt: skip
VALID = st.builds(_valid, events, st.sampled_from(VARIANTS))


@st.composite
def mixed_batches(draw: st.DrawFn, hostile_per_batch: int = 50) -> list[Message]:
    """At least ``hostile_per_batch`` hostile messages and some valid ones, shuffled together."""
    bad = draw(st.lists(HOSTILE, min_size=hostile_per_batch, max_size=hostile_per_batch + 10))
    good = draw(st.lists(VALID, max_size=25))
    messages = bad + good
    draw(st.randoms(use_true_random=False)).shuffle(messages)
    return messages


def check(messages: list[Message], decoder: EventDecoder = DECODER) -> None:
    """Decode ``messages`` as one batch; every verdict must be the expected one."""
    batch = decoder.decode([m.value for m in messages])
    valid = [i for i, m in enumerate(messages) if m.event_id is not None]
    kept = batch.index.tolist()
    assert kept == valid, [messages[i] for i in set(kept) ^ set(valid)]
    assert batch.event_ids == [messages[i].event_id for i in valid]
    assert [r.index for r in batch.rejected] == [
        i for i, m in enumerate(messages) if not m.event_id
    ]
    for r in batch.rejected:
        # The fallback for the unforeseen must not be what catches these: each has its reason.
        assert r.reason and r.reason != "undecodable", (messages[r.index], r)
        assert 0 < len(r.detail) <= MAX_DETAIL, (messages[r.index], r)
        r.detail.encode()  # goes into a Kafka header


# 200 examples x at least 50 hostile messages: over 10 000 hostile messages per run.
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mixed_batches())
def test_no_message_stops_decoding(messages: list[Message]) -> None:
    check(messages)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(HOSTILE, VALID), max_size=30))
def test_with_the_default_size_limit_too(messages: list[Message]) -> None:
    # Under the default limit (64 KiB) a megabyte stops at the size check, valid or not.
    limit = 64 * 1024
    decoder = EventDecoder(SCHEMA.model_copy(update={"max_event_bytes": limit}))
    check(
        [m if len(m.value or b"") <= limit else Message(m.label, m.value) for m in messages],
        decoder,
    )
