"""Decoding and validation of raw JSON events: every bad input gets its reason, order is kept."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlearn.config import SchemaConfig
from streamlearn.decoding import DecodedBatch, EventDecoder


def make_schema(**fields: Any) -> SchemaConfig:
    """A schema from plain data, short-form features included (as in a YAML file)."""
    return SchemaConfig.model_validate(fields)


SCHEMA = make_schema(
    target="y",
    features={"amount": "float", "hour": "int", "foreign": "bool", "channel": "category"},
    max_event_bytes=256,
)
DECODER = EventDecoder(SCHEMA)
MISSING = object()


def event(i: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid event whose values encode ``i``; ``field=MISSING`` drops a field."""
    base: dict[str, Any] = {
        "event_id": f"e{i}",
        "entity_id": f"card-{i}",
        "ts": 1_700_000_000_000 + i,
        "amount": i + 0.5,
        "hour": i % 24,
        "foreign": i % 2,
        "channel": ("web", "pos", "app")[i % 3],
        "y": i % 2,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not MISSING}


def raw(i: int = 0, **fields: Any) -> bytes:
    return orjson.dumps(event(i, **fields))


def decode_one(value: bytes | None, decoder: EventDecoder = DECODER) -> DecodedBatch:
    return decoder.decode([value])


def reason_of(value: bytes | None, decoder: EventDecoder = DECODER) -> tuple[str, str]:
    batch = decode_one(value, decoder)
    assert len(batch) == 0, "expected the event to be rejected"
    (rejection,) = batch.rejected
    assert rejection.index == 0
    return rejection.reason, rejection.detail


# --- valid events ----------------------------------------------------------------------------


def test_valid_event_becomes_columns() -> None:
    batch = DECODER.decode([raw(4)])
    assert batch.rejected == []
    assert batch.index.tolist() == [0]
    assert batch.event_ids == ["e4"]
    assert batch.entity_ids == ["card-4"]
    assert batch.timestamps_ms.tolist() == [1_700_000_000_004]
    assert batch.numeric["amount"].tolist() == [4.5]
    assert batch.numeric["hour"].tolist() == [4.0]
    assert batch.numeric["foreign"].tolist() == [0.0]
    assert batch.categorical == {"channel": ["pos"]}
    assert batch.targets.tolist() == [0.0]


def test_column_dtypes() -> None:
    batch = DECODER.decode([raw(1), raw(2)])
    assert batch.index.dtype == np.int64
    assert batch.timestamps_ms.dtype == np.int64
    assert batch.numeric["amount"].dtype == np.float64
    assert batch.numeric["hour"].dtype == np.float64
    assert batch.targets.dtype == np.float64


def test_epoch_millisecond_timestamps_are_exact() -> None:
    ts = 1_795_721_680_807
    assert DECODER.decode([raw(ts=ts)]).timestamps_ms.tolist() == [ts]


@pytest.mark.parametrize(
    ("fields", "column", "value"),
    [
        ({"event_id": 42}, "event_ids", ["42"]),  # integer ids become strings
        ({"entity_id": 7}, "entity_ids", ["7"]),
        ({"channel": 5411}, "channel", ["5411"]),  # merchant codes sent as numbers
        ({"amount": 3}, "amount", [3.0]),  # an int is a fine float
        ({"amount": True}, "amount", [1.0]),  # so is a bool
        ({"foreign": True}, "foreign", [1.0]),
        ({"foreign": False}, "foreign", [0.0]),
        ({"hour": True}, "hour", [1.0]),
        ({"ts": 12.9}, "ts", [12]),
    ],
)
def test_accepted_coercions(fields: dict[str, Any], column: str, value: list[Any]) -> None:
    batch = DECODER.decode([raw(**fields)])
    assert batch.rejected == []
    columns: dict[str, Any] = {
        "event_ids": batch.event_ids,
        "entity_ids": batch.entity_ids,
        "ts": batch.timestamps_ms.tolist(),
        **{k: v.tolist() for k, v in batch.numeric.items()},
        **batch.categorical,
    }
    assert columns[column] == value


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0, 0.0), (1, 1.0), (True, 1.0), (False, 0.0), (1.0, 1.0), (0.0, 0.0)],
)
def test_target_values(target: Any, expected: float) -> None:
    assert DECODER.decode([raw(y=target)]).targets.tolist() == [expected]


@pytest.mark.parametrize("target", [MISSING, None])
def test_missing_or_null_target_is_unlabelled_but_valid(target: Any) -> None:
    batch = DECODER.decode([raw(y=target)])
    assert batch.rejected == []
    assert len(batch) == 1
    assert math.isnan(batch.targets[0])


def test_schema_without_target_gives_nan_targets() -> None:
    schema = make_schema(features={"amount": "float"})
    batch = EventDecoder(schema).decode([raw(1, y=1), raw(2)])
    assert len(batch) == 2
    assert np.isnan(batch.targets).all()


def test_unknown_fields_are_ignored() -> None:
    batch = DECODER.decode([raw(extra={"nested": [1, 2]}, note="x")])
    assert batch.rejected == []
    assert len(batch) == 1


def test_event_of_exactly_the_size_limit_is_accepted() -> None:
    value = raw(pad="")
    value = raw(pad="x" * (SCHEMA.max_event_bytes - len(value)))
    assert len(value) == SCHEMA.max_event_bytes
    assert decode_one(value).rejected == []


# --- every bad-input class gets its reason ---------------------------------------------------


@pytest.mark.parametrize("value", [None, b""])
def test_empty_value(value: bytes | None) -> None:
    assert reason_of(value) == ("empty", "message has no value")


def test_oversized_value() -> None:
    value = raw(pad="x" * 300)
    reason, detail = reason_of(value)
    assert reason == "oversized"
    assert detail == f"{len(value)} bytes > 256"


@pytest.mark.parametrize("value", [b"{oops", b'{"event_id": "e1",}', b"\xff\xfe", b"{'a': 1}"])
def test_not_json(value: bytes) -> None:
    reason, detail = reason_of(value)
    assert reason == "not_json"
    assert detail.startswith("not valid JSON: ")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_not_finite(literal: bytes) -> None:
    value = raw(amount=0).replace(b'"amount":0', b'"amount":' + literal)
    assert literal in value
    assert reason_of(value) == ("not_finite", "event holds NaN or Infinity")


def test_nan_in_a_field_outside_the_schema_is_not_finite_too() -> None:
    # Strict JSON refuses the whole message; the reason still says why.
    value = raw().replace(b"{", b'{"score":NaN,', 1)
    assert reason_of(value)[0] == "not_finite"


@pytest.mark.parametrize("number", [b"1e999", b"-1e999"])
def test_float_overflow_is_not_finite(number: bytes) -> None:
    # orjson refuses numbers that overflow a double ("number is infinity"); they are named.
    with pytest.raises(orjson.JSONDecodeError, match="infinity"):
        orjson.loads(number)
    value = raw(amount=0).replace(b'"amount":0', b'"amount":' + number)
    assert reason_of(value)[0] == "not_finite"


def test_huge_integer_literal_is_rejected_and_the_batch_survives() -> None:
    # orjson refuses an integer that overflows a double; Python's json would parse it as an int.
    value = raw(amount=0).replace(b'"amount":0', b'"amount":' + b"9" * 400)
    decoder = EventDecoder(SCHEMA.model_copy(update={"max_event_bytes": 4096}))
    batch = decoder.decode([raw(0), value, raw(2)])
    assert batch.index.tolist() == [0, 2]
    assert [r.index for r in batch.rejected] == [1]
    assert batch.rejected[0].reason in ("not_finite", "not_json")


def test_deeply_nested_json_is_rejected_and_the_batch_survives() -> None:
    depth = 3000
    value = b'{"event_id":' + b"[" * depth + b"]" * depth + b"}"
    schema = make_schema(features={"amount": "float"}, max_event_bytes=64 * 1024)
    batch = EventDecoder(schema).decode(
        [value, b'{"event_id": "a", "entity_id": "b", "ts": 1, "amount": 2}']
    )
    assert [(r.index, r.reason) for r in batch.rejected] == [(0, "not_json")]
    assert batch.event_ids == ["a"]


@pytest.mark.parametrize("value", [b"[1, 2]", b'"text"', b"3", b"3.5", b"null", b"true", b"[]"])
def test_not_an_object(value: bytes) -> None:
    reason, detail = reason_of(value)
    assert reason == "not_object"
    assert detail.startswith("expected a JSON object, got ")


@pytest.mark.parametrize(
    "field", ["event_id", "entity_id", "ts", "amount", "hour", "foreign", "channel"]
)
def test_missing_field(field: str) -> None:
    fields: dict[str, Any] = {field: MISSING}
    assert reason_of(raw(**fields)) == ("missing_field", f"field {field!r} is missing")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("amount", "9.5", "a number"),  # a string for a float
        ("amount", None, "a number"),
        ("amount", [1.0], "a number"),
        ("amount", {"v": 1}, "a number"),
        ("ts", "1700000000000", "a number"),
        ("hour", 1.0, "an integer"),  # a float for an int field
        ("hour", 1.5, "an integer"),
        ("hour", "1", "an integer"),
        ("foreign", 0.5, "an integer"),  # a float for a bool field
        ("foreign", "yes", "an integer"),
        ("event_id", True, "a string id"),  # bool is not an id
        ("event_id", 1.5, "a string id"),
        ("event_id", None, "a string id"),
        ("event_id", ["e1"], "a string id"),
        ("entity_id", {"id": 1}, "a string id"),
        ("channel", 1.5, "a string"),
        ("channel", True, "a string"),
        ("channel", None, "a string"),
        ("channel", ["web"], "a string"),
    ],
)
def test_wrong_type(field: str, value: Any, expected: str) -> None:
    reason, detail = reason_of(raw(**{field: value}))
    assert reason == "wrong_type"
    assert detail.startswith(f"field {field!r}: expected {expected}, got ")


@pytest.mark.parametrize("target", [2, -1, 0.5, "yes", "1", [1], {"v": 1}])
def test_bad_target_value(target: Any) -> None:
    reason, detail = reason_of(raw(y=target))
    assert reason == "wrong_type"
    assert detail.startswith("field 'y': expected 0/1 or true/false, got ")


def test_empty_string_id_is_rejected_among_mixed_ids() -> None:
    batch = DECODER.decode([raw(1, event_id=""), raw(2, event_id=7)])
    assert [(r.index, r.reason) for r in batch.rejected] == [(0, "wrong_type")]
    assert batch.event_ids == ["7"]


def test_empty_string_id_is_rejected_in_an_all_string_batch() -> None:
    # The same event gets the same verdict whatever its neighbours' id types.
    batch = DECODER.decode([raw(1, event_id=""), raw(2)])
    assert [(r.index, r.reason) for r in batch.rejected] == [(0, "wrong_type")]
    batch = DECODER.decode([raw(1, entity_id=""), raw(2)])
    assert [(r.index, r.reason) for r in batch.rejected] == [(0, "wrong_type")]


@pytest.mark.parametrize("ts", [-1, 1e300, 2**53 + 2, 1.7e16])
def test_timestamp_outside_epoch_milliseconds_is_out_of_range(ts: float) -> None:
    reason, detail = reason_of(raw(ts=ts))
    assert reason == "out_of_range"
    assert detail.startswith("field 'ts': ")
    assert detail.endswith("is not epoch milliseconds")


@pytest.mark.parametrize("ts", [0, 2**53])
def test_timestamp_range_bounds_are_accepted(ts: int) -> None:
    assert DECODER.decode([raw(ts=ts)]).timestamps_ms.tolist() == [ts]


def test_first_problem_is_the_one_reported() -> None:
    # Missing id and a wrong amount: one rejection, for the field checked first.
    batch = DECODER.decode([raw(event_id=MISSING, amount="x", y=7)])
    assert [(r.index, r.reason, r.detail) for r in batch.rejected] == [
        (0, "missing_field", "field 'event_id' is missing")
    ]


# --- batches ---------------------------------------------------------------------------------


def test_empty_batch() -> None:
    batch = DECODER.decode([])
    assert len(batch) == 0
    assert batch.index.tolist() == []
    assert batch.rejected == []
    assert batch.numeric["amount"].shape == (0,)
    assert batch.categorical == {"channel": []}


def test_batch_with_only_bad_events() -> None:
    batch = DECODER.decode([b"", b"[1]", raw(amount="x")])
    assert len(batch) == 0
    assert batch.index.tolist() == []
    assert [r.reason for r in batch.rejected] == ["empty", "not_object", "wrong_type"]
    assert batch.numeric["hour"].shape == (0,)
    assert batch.timestamps_ms.shape == (0,)
    assert batch.targets.shape == (0,)


def test_mixed_batch_keeps_order_and_aligns_columns() -> None:
    values = [
        raw(0),
        b"not json",
        raw(2, amount="2.5"),
        raw(3, y=MISSING),
        None,
        raw(5, hour=1.5),
        raw(6),
        b"[6]",
        raw(8, event_id=8),
    ]
    batch = DECODER.decode(values)
    assert batch.index.tolist() == [0, 3, 6, 8]
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (1, "not_json"),
        (2, "wrong_type"),
        (4, "empty"),
        (5, "wrong_type"),
        (7, "not_object"),
    ]
    # Each valid row's columns belong to the event at its raw position.
    assert batch.event_ids == ["e0", "e3", "e6", "8"]
    assert batch.entity_ids == [f"card-{i}" for i in (0, 3, 6, 8)]
    assert batch.numeric["amount"].tolist() == [0.5, 3.5, 6.5, 8.5]
    assert batch.numeric["hour"].tolist() == [0.0, 3.0, 6.0, 8.0]
    assert batch.categorical["channel"] == ["web", "web", "web", "app"]
    assert batch.timestamps_ms.tolist() == [1_700_000_000_000 + i for i in (0, 3, 6, 8)]
    assert np.array_equal(batch.targets, [0.0, np.nan, 0.0, 0.0], equal_nan=True)


def test_decoder_keeps_no_state_between_batches() -> None:
    first = DECODER.decode([raw(1), b"x"])
    DECODER.decode([raw(5, channel=None)] * 3)
    again = DECODER.decode([raw(1), b"x"])
    assert again.event_ids == first.event_ids
    assert again.rejected == first.rejected


# --- property: every raw message is accounted for exactly once --------------------------------

# Kinds of message, each with the reason it must get (None: valid).
KINDS: dict[str, tuple[Any, str | None]] = {
    "valid": (lambda i: raw(i), None),
    "unlabelled": (lambda i: raw(i, y=MISSING), None),
    "null_target": (lambda i: raw(i, y=None), None),
    "int_id": (lambda i: raw(i, event_id=i), None),
    "int_channel": (lambda i: raw(i, channel=i), None),
    "empty": (lambda i: b"", "empty"),
    "none": (lambda i: None, "empty"),
    "oversized": (lambda i: raw(i, pad="x" * 300), "oversized"),
    "not_json": (lambda i: b'{"event_id": "e%d"' % i, "not_json"),
    "nan": (lambda i: raw(i, amount=0).replace(b'"amount":0', b'"amount":NaN'), "not_finite"),
    "list": (lambda i: b"[%d]" % i, "not_object"),
    "missing_entity": (lambda i: raw(i, entity_id=MISSING), "missing_field"),
    "missing_feature": (lambda i: raw(i, channel=MISSING), "missing_field"),
    "string_amount": (lambda i: raw(i, amount=str(i)), "wrong_type"),
    "float_hour": (lambda i: raw(i, hour=0.5), "wrong_type"),
    "bool_id": (lambda i: raw(i, event_id=True), "wrong_type"),
    "bad_target": (lambda i: raw(i, y=2), "wrong_type"),
    "empty_id": (lambda i: raw(i, event_id=""), "wrong_type"),
    "negative_ts": (lambda i: raw(i, ts=-i - 1), "out_of_range"),
}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(KINDS)), max_size=150))
def test_every_raw_index_is_kept_or_rejected_exactly_once(kinds: list[str]) -> None:
    values = [KINDS[kind][0](i) for i, kind in enumerate(kinds)]
    batch = DECODER.decode(values)
    kept = batch.index.tolist()
    rejected = [r.index for r in batch.rejected]
    assert sorted(kept + rejected) == list(range(len(values)))
    assert kept == sorted(kept)
    assert rejected == sorted(rejected)
    for r in batch.rejected:
        assert r.reason == KINDS[kinds[r.index]][1]
    assert [i for i, kind in enumerate(kinds) if KINDS[kind][1] is None] == kept
    # Every column lines up with the event at the raw position it came from.
    n = len(kept)
    assert len(batch.event_ids) == len(batch.entity_ids) == n
    assert batch.timestamps_ms.tolist() == [1_700_000_000_000 + i for i in kept]
    assert batch.numeric["amount"].tolist() == [i + 0.5 for i in kept]
    assert batch.numeric["hour"].tolist() == [float(i % 24) for i in kept]
    assert batch.entity_ids == [f"card-{i}" for i in kept]
    expected_ids = [str(i) if kinds[i] == "int_id" else f"e{i}" for i in kept]
    assert batch.event_ids == expected_ids
    expected_channels = [
        str(i) if kinds[i] == "int_channel" else ("web", "pos", "app")[i % 3] for i in kept
    ]
    assert batch.categorical["channel"] == expected_channels
    expected_targets = [
        math.nan if kinds[i] in ("unlabelled", "null_target") else float(i % 2) for i in kept
    ]
    assert np.array_equal(batch.targets, expected_targets, equal_nan=True)


# --- hostile content: no message may make decode raise ----------------------------------------

BIG_SCHEMA = SCHEMA.model_copy(update={"max_event_bytes": 2 * 1024 * 1024})
BIG_DECODER = EventDecoder(BIG_SCHEMA)


def nested(depth: int, opener: bytes = b"[") -> bytes:
    """A JSON value ``depth`` levels deep: lists, or objects each holding the next."""
    if opener == b"[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [900, 1000, 1023])
@pytest.mark.parametrize("opener", [b"[", b"{"])
def test_nesting_just_under_the_parser_limit_is_not_an_object(depth: int, opener: bytes) -> None:
    # orjson parses up to 1024 levels; describing such a value with repr() raised RecursionError.
    reason, detail = reason_of(nested(depth, opener), BIG_DECODER)
    assert reason == ("not_object" if opener == b"[" else "missing_field")
    assert len(detail) < 100


@pytest.mark.parametrize("field", ["event_id", "entity_id", "ts", "amount", "hour", "channel", "y"])
@pytest.mark.parametrize("depth", [900, 1000, 1022])
def test_nested_value_in_a_field_is_a_wrong_type(field: str, depth: int) -> None:
    value = raw(**{field: 0}).replace(
        f'"{field}":0'.encode(), f'"{field}":'.encode() + nested(depth)
    )
    reason, detail = reason_of(value, BIG_DECODER)
    assert reason == "wrong_type"
    assert detail.endswith("got a list of 1 item")


def test_nested_object_in_a_field_is_described_by_its_size() -> None:
    reason, detail = reason_of(raw(amount={"a": 1, "b": [2]}))
    assert (reason, detail) == (
        "wrong_type",
        "field 'amount': expected a number, got an object of 2 keys",
    )


def test_long_string_in_a_field_is_previewed_briefly() -> None:
    reason, detail = reason_of(raw(y="x" * 200), BIG_DECODER)
    assert reason == "wrong_type"
    assert detail == "field 'y': expected 0/1 or true/false, got str '" + "x" * 40 + "'..."


@pytest.mark.parametrize("ts", [2**53 + 1, 2**63 - 1, 2**64 - 1, 2**64, 2**200])
def test_integer_timestamp_past_the_bound_is_out_of_range(ts: int) -> None:
    # 2**53 + 1 rounds to 2**53 as a float; the bound is checked on the integer itself.
    value = raw(ts=0).replace(b'"ts":0', b'"ts":%d' % ts)
    assert b"%d" % ts in value
    reason, detail = reason_of(value)
    assert reason == "out_of_range"
    assert detail.startswith("field 'ts': ")


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("amount", "out_of_range"),
        ("hour", "wrong_type"),
        ("foreign", "wrong_type"),
        ("y", "wrong_type"),
    ],
)
def test_integer_past_64_bits_in_a_numeric_field_is_rejected(field: str, reason: str) -> None:
    # orjson reads integers past 64 bits as floats: too big for an amount, not an integer at all.
    value = raw(**{field: 0}).replace(f'"{field}":0'.encode(), f'"{field}":{2**64}'.encode())
    assert reason_of(value)[0] == reason


@pytest.mark.parametrize("digits", [310, 400, 5000])
def test_integer_past_a_double_is_not_json_with_a_reason(digits: int) -> None:
    value = raw(amount=0).replace(b'"amount":0', b'"amount":' + b"9" * digits)
    (rejection,) = BIG_DECODER.decode([value]).rejected
    assert rejection.reason == "not_json"
    assert rejection.detail.startswith("integer too large for a double at char ")


def test_nan_after_a_megabyte_of_deep_nesting_is_named_cheaply() -> None:
    # Naming NaN must not re-parse the payload (a second parser would recurse through it).
    value = b'{"a":NaN,"pad":' + b"[" * 500_000 + b"]" * 500_000 + b"}"
    assert len(value) > 1_000_000
    (rejection,) = BIG_DECODER.decode([value]).rejected
    assert (rejection.reason, rejection.detail) == ("not_finite", "event holds NaN or Infinity")


def test_megabyte_payloads_are_rejected_with_short_details() -> None:
    payloads = [
        b'{"pad":"' + b"x" * 2**20 + b'", "amount": NaN}',
        b"[" * 2**20,
        b'{"event_id":"' + b"\\ud800" * 150_000 + b'"}',
        b"\xff" * 2**20,
        b'{"a":' + b"1e400," * 170_000 + b"}",
    ]
    batch = BIG_DECODER.decode([*payloads, raw(1)])
    assert batch.event_ids == ["e1"]
    assert [r.index for r in batch.rejected] == list(range(len(payloads)))
    assert all(r.reason and 0 < len(r.detail) <= 300 for r in batch.rejected)


def test_a_failure_in_the_column_path_costs_only_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whatever no check foresaw, the batch falls back to one message at a time.
    numbers = EventDecoder._numbers

    def fragile(v: Any, name: str, *args: Any, **kwargs: Any) -> np.ndarray:
        if any(r.get("amount") == 13.5 for r in v.records):
            raise ValueError("x" * 1000)
        return numbers(v, name, *args, **kwargs)

    monkeypatch.setattr(EventDecoder, "_numbers", staticmethod(fragile))
    values = [raw(0), b"[1]", raw(13), raw(3, hour="x"), raw(4)]
    batch = DECODER.decode(values)
    assert batch.index.tolist() == [0, 4]
    assert batch.event_ids == ["e0", "e4"]
    assert batch.entity_ids == ["card-0", "card-4"]
    assert batch.numeric["amount"].tolist() == [0.5, 4.5]
    assert batch.numeric["hour"].tolist() == [0.0, 4.0]
    assert batch.categorical == {"channel": ["web", "pos"]}
    assert batch.timestamps_ms.tolist() == [1_700_000_000_000, 1_700_000_000_004]
    assert batch.targets.tolist() == [0.0, 0.0]
    assert batch.timestamps_ms.dtype == np.int64 and batch.index.dtype == np.int64
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (1, "not_object"),
        (2, "undecodable"),
        (3, "wrong_type"),
    ]
    assert batch.rejected[1].detail.startswith("ValueError: xxx")
    assert len(batch.rejected[1].detail) <= 300


def test_a_batch_where_every_message_fails_the_column_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> np.ndarray:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(EventDecoder, "_numbers", staticmethod(broken))
    batch = DECODER.decode([raw(0), raw(1)])
    assert len(batch) == 0
    assert batch.numeric["amount"].shape == (0,) and batch.timestamps_ms.dtype == np.int64
    assert [(r.reason, r.detail) for r in batch.rejected] == [
        ("undecodable", "RecursionError: maximum recursion depth exceeded")
    ] * 2
