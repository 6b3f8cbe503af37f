"""Turns decoded columns into model inputs: a dense matrix, or river-style dicts on demand.

Numeric fields become columns as they are; each categorical field is hashed into a fixed number
of one-hot buckets, so the matrix width never changes as new categories appear.
"""

from __future__ import annotations

import zlib
from functools import cached_property
from typing import Any

import numpy as np

from streamlearn.config import FieldType, SchemaConfig
from streamlearn.decoding import DecodedBatch

_CACHE_LIMIT = 100_000


class FeatureBatch:
    """The features of one decoded batch, computed lazily in the form a model asks for.

    ``matrix`` is the dense ``(n, width)`` float64 array (numeric columns, then one-hot hash
    buckets); ``rows`` are dicts keyed by field (``"channel=web": 1.0`` for categories), as
    river models take them.
    """

    def __init__(self, featurizer: Featurizer, decoded: DecodedBatch) -> None:
        self._featurizer = featurizer
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.decoded)

    @cached_property
    def matrix(self) -> np.ndarray:
        """Dense feature matrix."""
        return self._featurizer.matrix(self.decoded)

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """One feature dict per event."""
        return self._featurizer.rows(self.decoded)

    def row(self, i: int) -> FeatureBatch:
        """Event ``i`` alone, sharing what was computed for the batch.

        >>> from streamlearn.config import SchemaConfig
        >>> from streamlearn.decoding import EventDecoder
        >>> schema = SchemaConfig(features={"x": "float"})
        >>> raw = [b'{"event_id": "%d", "entity_id": "e", "ts": 0, "x": %d}' % (i, i)
        ...        for i in range(3)]
        >>> batch = Featurizer(schema).transform(EventDecoder(schema).decode(raw))
        >>> one = batch.row(2)
        >>> len(one), one.matrix.tolist(), one.decoded.event_ids
        (1, [[2.0]], ['2'])
        """
        one = FeatureBatch(self._featurizer, self.decoded.take([i]))
        for name in ("matrix", "rows"):  # computed already: a view, not computed again
            if name in self.__dict__:
                one.__dict__[name] = self.__dict__[name][i : i + 1]
        return one


class Featurizer:
    """Builds feature batches for one schema.

    Examples
    --------
    >>> from streamlearn.config import SchemaConfig
    >>> from streamlearn.decoding import EventDecoder
    >>> schema = SchemaConfig(features={"amount": "float",
    ...                                 "channel": {"type": "category", "buckets": 4}})
    >>> decoded = EventDecoder(schema).decode([
    ...     b'{"event_id": "e1", "entity_id": "c", "ts": 1, "amount": 2.5, "channel": "web"}'])
    >>> f = Featurizer(schema)
    >>> f.width, f.columns[0]
    (5, 'amount')
    >>> batch = f.transform(decoded)
    >>> batch.matrix.sum(), batch.rows
    (np.float64(3.5), [{'amount': 2.5, 'channel=web': 1.0}])
    """

    def __init__(self, schema: SchemaConfig) -> None:
        self.numeric = [n for n, s in schema.features.items() if s.type != FieldType.CATEGORY]
        self.numeric += list(schema.aggregates)  # computed per entity before featurizing
        self.categories = {
            n: s.buckets for n, s in schema.features.items() if s.type == FieldType.CATEGORY
        }
        self._offsets: dict[str, int] = {}
        offset = len(self.numeric)
        for name, buckets in self.categories.items():
            self._offsets[name] = offset
            offset += buckets
        self.width = offset
        self._codes: dict[str, dict[str, int]] = {name: {} for name in self.categories}
        self.columns = self.numeric + [
            f"{name}#{b}" for name, buckets in self.categories.items() for b in range(buckets)
        ]

    def transform(self, decoded: DecodedBatch) -> FeatureBatch:
        """Wrap a decoded batch; features are computed when a model first asks."""
        return FeatureBatch(self, decoded)

    def matrix(self, decoded: DecodedBatch) -> np.ndarray:
        """Dense matrix: numeric columns then one-hot hash buckets per category."""
        n = len(decoded)
        out = np.zeros((n, self.width), dtype=np.float64)
        for j, name in enumerate(self.numeric):
            out[:, j] = decoded.numeric[name]
        rows = np.arange(n)
        for name, values in decoded.categorical.items():
            out[rows, self._offsets[name] + self.codes(name, values)] = 1.0
        return out

    def codes(self, name: str, values: list[str]) -> np.ndarray:
        """Stable hash bucket of each value (CRC32, so it is the same in every process)."""
        cache = self._codes[name]
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        buckets = self.categories[name]
        missing = set(values).difference(cache)
        for value in missing:
            cache[value] = zlib.crc32(value.encode()) % buckets
        return np.fromiter(map(cache.__getitem__, values), dtype=np.int64, count=len(values))

    def rows(self, decoded: DecodedBatch) -> list[dict[str, Any]]:
        """River-style dicts: numeric values, and ``"field=value": 1.0`` per category."""
        names = self.numeric
        numeric_rows = (
            np.column_stack([decoded.numeric[n] for n in names]).tolist()
            if names
            else [[] for _ in range(len(decoded))]
        )
        rows = [dict(zip(names, values)) for values in numeric_rows]
        for name, values in decoded.categorical.items():
            prefix = f"{name}="
            for row, value in zip(rows, values):
                row[prefix + value] = 1.0
        return rows
