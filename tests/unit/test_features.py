"""The featurizer: matrix layout, stable category hashing, and dict rows that match the matrix."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from streamlearn import features
from streamlearn.config import SchemaConfig
from streamlearn.decoding import DecodedBatch, EventDecoder
from streamlearn.features import Featurizer


def make_schema(**fields: Any) -> SchemaConfig:
    """A schema from plain data, short-form features included (as in a YAML file)."""
    return SchemaConfig.model_validate(fields)


SCHEMA = make_schema(
    features={
        "amount": "float",
        "channel": {"type": "category", "buckets": 4},
        "hour": "int",
        "mcc": {"type": "category", "buckets": 32},
        "foreign": "bool",
    }
)


def decode(schema: SchemaConfig, events: list[dict[str, Any]]) -> DecodedBatch:
    values = [
        orjson.dumps({"event_id": f"e{i}", "entity_id": "c", "ts": i, **e})
        for i, e in enumerate(events)
    ]
    batch = EventDecoder(schema).decode(values)
    assert batch.rejected == []
    return batch


EVENTS = [
    {"amount": 10.5, "channel": "web", "hour": 3, "mcc": "5411", "foreign": 0},
    {"amount": -2.0, "channel": "pos", "hour": 23, "mcc": "4111", "foreign": 1},
    {"amount": 0.0, "channel": "app", "hour": 0, "mcc": "7995", "foreign": True},
]


def test_columns_are_numeric_fields_then_buckets_in_schema_order() -> None:
    f = Featurizer(SCHEMA)
    assert f.numeric == ["amount", "hour", "foreign"]
    assert f.width == 3 + 4 + 32
    assert len(f.columns) == f.width
    assert f.columns[:5] == ["amount", "hour", "foreign", "channel#0", "channel#1"]
    assert f.columns[7] == "mcc#0"
    assert f.columns[-1] == "mcc#31"


def test_matrix_layout() -> None:
    f = Featurizer(SCHEMA)
    m = f.transform(decode(SCHEMA, EVENTS)).matrix
    assert m.shape == (3, f.width)
    assert m.dtype == np.float64
    assert m[:, :3].tolist() == [[10.5, 3.0, 0.0], [-2.0, 23.0, 1.0], [0.0, 0.0, 1.0]]
    channel, mcc = m[:, 3:7], m[:, 7:]
    # One hot per category block and row, in the CRC32 bucket of the value.
    assert channel.sum(axis=1).tolist() == [1.0, 1.0, 1.0]
    assert mcc.sum(axis=1).tolist() == [1.0, 1.0, 1.0]
    assert channel.argmax(axis=1).tolist() == [1, 0, 3]  # web, pos, app
    assert mcc.argmax(axis=1).tolist() == [11, 5, 2]  # 5411, 4111, 7995
    assert set(np.unique(m[:, 3:])) <= {0.0, 1.0}


def test_bucket_is_crc32_of_the_value() -> None:
    f = Featurizer(SCHEMA)
    values = ["web", "pos", "app", "", "ünïcödé", "web"]
    expected = [zlib.crc32(v.encode()) % 4 for v in values]
    assert f.codes("channel", values).tolist() == expected


def test_hashing_is_stable_across_featurizers() -> None:
    # Checkpointed models depend on it: a restarted process must put values in the same bucket.
    values = [f"merchant-{i}" for i in range(200)]
    a, b = Featurizer(SCHEMA), Featurizer(SCHEMA)
    b.codes("mcc", list(reversed(values)))  # a different history of seen values
    assert a.codes("mcc", values).tolist() == b.codes("mcc", values).tolist()


def test_hashing_survives_the_cache_being_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "_CACHE_LIMIT", 3)
    f = Featurizer(SCHEMA)
    values = [f"v{i}" for i in range(20)]
    for start in range(0, 20, 4):
        chunk = values[start : start + 4]
        assert f.codes("mcc", chunk).tolist() == [zlib.crc32(v.encode()) % 32 for v in chunk]
    assert len(f._codes["mcc"]) <= 3 + 4


def test_unseen_categories_keep_the_width() -> None:
    f = Featurizer(SCHEMA)
    first = f.transform(decode(SCHEMA, EVENTS)).matrix
    new = [dict(EVENTS[0], channel=f"brand-new-{i}", mcc=str(9000 + i)) for i in range(50)]
    later = f.transform(decode(SCHEMA, new)).matrix
    assert first.shape[1] == later.shape[1] == f.width
    assert (later[:, 3:7].sum(axis=1) == 1.0).all()
    assert (later[:, 7:].sum(axis=1) == 1.0).all()


def test_rows_match_the_matrix() -> None:
    f = Featurizer(SCHEMA)
    batch = f.transform(decode(SCHEMA, EVENTS))
    assert batch.rows[0] == {
        "amount": 10.5,
        "hour": 3.0,
        "foreign": 0.0,
        "channel=web": 1.0,
        "mcc=5411": 1.0,
    }
    for row, matrix_row in zip(batch.rows, batch.matrix):
        rebuilt = np.zeros(f.width)
        for key, value in row.items():
            if "=" in key:
                name, category = key.split("=", 1)
                rebuilt[f._offsets[name] + f.codes(name, [category])[0]] = value
            else:
                rebuilt[f.numeric.index(key)] = value
        assert rebuilt.tolist() == matrix_row.tolist()


def test_rows_hold_python_floats() -> None:
    # river models do arithmetic on these; numpy scalars would be slower and leak into state.
    row = Featurizer(SCHEMA).transform(decode(SCHEMA, EVENTS)).rows[0]
    assert all(type(v) is float for v in row.values())


def test_only_categories() -> None:
    schema = make_schema(features={"channel": {"type": "category", "buckets": 4}})
    f = Featurizer(schema)
    batch = f.transform(decode(schema, [{"channel": "web"}, {"channel": "pos"}]))
    assert batch.rows == [{"channel=web": 1.0}, {"channel=pos": 1.0}]
    assert batch.matrix.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]


def test_only_numbers() -> None:
    schema = make_schema(features={"a": "float", "b": "int"})
    f = Featurizer(schema)
    batch = f.transform(decode(schema, [{"a": 1.5, "b": 2}]))
    assert f.width == 2
    assert batch.rows == [{"a": 1.5, "b": 2.0}]
    assert batch.matrix.tolist() == [[1.5, 2.0]]


def test_empty_batch() -> None:
    f = Featurizer(SCHEMA)
    batch = f.transform(decode(SCHEMA, []))
    assert len(batch) == 0
    assert batch.matrix.shape == (0, f.width)
    assert batch.rows == []


def test_feature_batch_computes_each_form_once() -> None:
    f = Featurizer(SCHEMA)
    batch = f.transform(decode(SCHEMA, EVENTS))
    assert batch.matrix is batch.matrix
    assert batch.rows is batch.rows
    assert len(batch) == 3
