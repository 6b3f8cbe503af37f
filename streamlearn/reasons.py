"""Reason codes: the features that pushed each event's score up most, as one JSON array per event.

A linear model's score rises with ``w·x``, so feature ``j`` adds ``w_j·x_j`` on the inputs the
model sees; the largest positive terms, computed for the whole batch at once, are the reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import orjson

from streamlearn.decoding import DecodedBatch

DECIMALS = 4
_CLOSE = np.array([b"", b"],", b"]]"], dtype=object)  # after: no pair, a pair, the last pair
_END = np.array([b"\n", b"]\n"], dtype=object)  # a row with pairs, one without


def matrix_reasons(
    inputs: np.ndarray,
    weights: np.ndarray,
    top: int,
    numeric: Sequence[str],
    categories: Mapping[str, int],
    values: Mapping[str, Sequence[str]],
) -> list[str]:
    """Reason codes of a linear model, from the ``(n, width)`` matrix it sees and its weights.

    ``weights`` is one ``(width,)`` vector, or one per row (``(n, width)``: rows scored by
    successive states of the model).

    The matrix is laid out as the featurizer builds it: the ``numeric`` fields, then each
    category's one-hot buckets (``categories`` maps field to bucket count). A category adds
    only through the row's own bucket, the one that is 1, named by the row's value
    (``values[field][row]``), so each row has one candidate per field, not per bucket.

    Examples
    --------
    >>> inputs = np.array([[2.0, -1.0, 0, 1, 0], [0.5, 1.0, 1, 0, 0]])
    >>> weights = np.array([0.6172835, 2.0, 0.5, 0.25, 9.0])
    >>> for reasons in matrix_reasons(inputs, weights, 3, ["amount", "hour"], {"channel": 3},
    ...                               {"channel": ["web", "pos"]}):
    ...     print(reasons)
    [["amount",1.2346],["channel=web",0.25]]
    [["hour",2.0],["channel=pos",0.5],["amount",0.3086]]
    """
    n_numeric = len(numeric)
    rows = np.arange(len(inputs))
    per_row = weights.ndim == 2
    columns = [inputs[:, :n_numeric] * weights[..., :n_numeric]]
    offset = n_numeric
    for buckets in categories.values():
        block = inputs[:, offset : offset + buckets]
        bucket = block.argmax(axis=1)
        weight = weights[rows, offset + bucket] if per_row else weights[offset + bucket]
        columns.append((weight * block[rows, bucket])[:, None])
        offset += buckets
    ids, vocabulary = _names(len(inputs), numeric, {f: values[f] for f in categories})
    return encode(np.hstack(columns), ids, vocabulary, top)


def affine_reasons(
    decoded: DecodedBatch,
    weights: Mapping[str, float],
    transform: Callable[[dict[str, float]], dict[str, float]],
    top: int,
) -> list[str]:
    """Reason codes of a linear model on named features (river's), behind per-feature scaling.

    ``transform`` is what the model does to a feature dict before its weights. It must map each
    feature alone and affinely (river's ``StandardScaler``, ``MinMaxScaler``, ``MaxAbsScaler``),
    so two probes, every feature at 0 and at 1, give each feature's map for the whole batch.
    Categories are ``field=value`` features at 1.0.

    Examples
    --------
    >>> from streamlearn.config import SchemaConfig
    >>> from streamlearn.decoding import EventDecoder
    >>> schema = SchemaConfig(features={"amount": "float", "channel": "category"})
    >>> decoded = EventDecoder(schema).decode([
    ...     b'{"event_id": "a", "entity_id": "e", "ts": 0, "amount": 1.0, "channel": "web"}',
    ...     b'{"event_id": "b", "entity_id": "e", "ts": 0, "amount": -1.0, "channel": "pos"}'])
    >>> double = lambda x: {k: 2 * v for k, v in x.items()}
    >>> affine_reasons(decoded, {"amount": 0.5, "channel=web": 0.1}, double, 3)
    ['[["amount",1.0],["channel=web",0.2]]', '[]']
    """
    n, numeric = len(decoded), decoded.numeric
    ids, vocabulary = _names(n, list(numeric), decoded.categorical)
    labels = vocabulary[len(numeric) :]
    at0 = transform(dict.fromkeys(vocabulary, 0.0))
    at1 = transform(dict.fromkeys(vocabulary, 1.0))
    columns = [
        weights.get(name, 0.0) * (at0[name] + (at1[name] - at0[name]) * x)
        for name, x in numeric.items()
    ]
    per_label = np.array([weights.get(label, 0.0) * at1[label] for label in labels])
    columns += [per_label[ids[:, j] - len(numeric)] for j in range(len(numeric), ids.shape[1])]
    matrix = np.column_stack(columns) if columns else np.zeros((n, 0))
    return encode(matrix, ids, vocabulary, top)


def encode(
    contributions: np.ndarray, ids: np.ndarray, vocabulary: Sequence[str], top: int
) -> list[str]:
    """Per row, ``[[name, contribution], ...]`` of its ``top`` largest contributions above 0.

    ``ids[i, j]`` is the position in ``vocabulary`` of the name of ``contributions[i, j]``.
    Contributions are rounded to 4 decimals first; those that round to 0, and non-finite ones
    (a diverged model), are left out.

    Examples
    --------
    >>> ids = np.array([[0, 1, 2], [0, 1, 2]])
    >>> encode(np.array([[0.5, 2.0, -1.0], [0.00004, np.inf, 0.0]]), ids, ["a", "b", "c"], 2)
    ['[["b",2.0],["a",0.5]]', '[]']
    """
    if not np.isfinite(contributions).all():
        contributions = np.nan_to_num(contributions, nan=0.0, posinf=0.0, neginf=0.0)
    cols, vals = top_columns(contributions, top)
    vals = np.round(vals, DECIMALS)
    n, k = vals.shape
    if n == 0 or k == 0:
        return ["[]"] * n
    keep = vals > 0  # largest first, so each row's kept ones lead
    kept = keep.sum(axis=1)
    # The batch's JSON is joined from byte tokens in one call, with no list per event: that
    # is faster than orjson per event, and spares the garbage collector thousands of lists.
    # Per row: "[", per pair '["name",' value and "]," (the last "]]", dropped ones ""),
    # then "]" if none was kept and a newline to split at (orjson never writes a raw one).
    prefixes = np.empty(len(vocabulary) + 1, dtype=object)
    prefixes[:] = [b"[" + orjson.dumps(name) + b"," for name in vocabulary] + [b""]
    names = prefixes[np.where(keep, np.take_along_axis(ids, cols, axis=1), -1)]
    values = np.full((n, k), b"", dtype=object)
    values[keep] = orjson.dumps(vals[keep], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    closers = _CLOSE[keep.astype(np.int64) + (kept[:, None] == np.arange(1, k + 1))]
    tokens = np.concatenate(
        [
            np.full((n, 1), b"[", dtype=object),
            np.stack([names, values, closers], axis=2).reshape(n, 3 * k),
            _END[(kept == 0).astype(np.int64)][:, None],
        ],
        axis=1,
    )
    return b"".join(tokens.ravel().tolist()).decode().split("\n")[:-1]


def top_columns(contributions: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the ``top`` largest (finite) values, largest first, and those values.

    Examples
    --------
    >>> cols, vals = top_columns(np.array([[0.1, 3.0, -1.0, 2.0]]), 2)
    >>> cols.tolist(), vals.tolist()
    ([[1, 3]], [[3.0, 2.0]])
    """
    n, width = contributions.shape
    k = max(0, min(top, width))
    cols = np.empty((n, k), dtype=np.int64)
    vals = np.empty((n, k))
    work = contributions.copy()
    rows = np.arange(n)
    # k is small (3): k passes of argmax beat argpartition, which works row by row.
    for t in range(k):
        best = work.argmax(axis=1)
        cols[:, t] = best
        vals[:, t] = work[rows, best]
        work[rows, best] = -np.inf
    return cols, vals


def _names(
    n: int, numeric: Sequence[str], categorical: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, list[str]]:
    """Name ids of an ``(n, numeric + categories)`` contribution matrix, and the names.

    Numeric columns are named by their field; a category column by each row's ``field=value``.

    >>> ids, names = _names(3, ["amount"], {"channel": ["web", "pos", "web"]})
    >>> ids.tolist(), names
    ([[0, 1], [0, 2], [0, 1]], ['amount', 'channel=web', 'channel=pos'])
    """
    vocabulary = list(numeric)
    ids = np.empty((n, len(numeric) + len(categorical)), dtype=np.int64)
    ids[:, : len(numeric)] = np.arange(len(numeric))
    for j, (field, values) in enumerate(categorical.items(), start=len(numeric)):
        distinct = list(dict.fromkeys(values))  # C loops only: this runs for every event
        index = dict(zip(distinct, range(len(vocabulary), len(vocabulary) + len(distinct))))
        ids[:, j] = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=n)
        vocabulary += [f"{field}={value}" for value in distinct]
    return ids, vocabulary
