"""How sure an AUC difference is: a paired bootstrap over customers.

Two replays of the same stream label the same events, so their AUCs are compared on the same
joins (paired). Churn labels are not independent: one churning customer gives several positive
labels, so the bootstrap draws customers with replacement, not labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

RESAMPLES = 400


def paired_delta(
    a: dict[str, np.ndarray],
    b: dict[str, np.ndarray],
    from_index: int = 0,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC(a) - AUC(b) over the joins of events at ``from_index`` or later, with a 90 % interval.

    ``a`` and ``b`` are :meth:`Replay.arrays` of two replays of the same stream.

    >>> rng = np.random.default_rng(1)
    >>> y = (rng.random(400) < 0.3).astype(int)
    >>> base = {"index": np.arange(400), "entity": np.arange(400) // 4, "target": y,
    ...         "served": y + rng.normal(0, 1, 400)}
    >>> same = paired_delta(base, base)
    >>> same["delta"], same["ci90"]
    (0.0, [0.0, 0.0])
    """
    if not np.array_equal(a["index"], b["index"]) or not np.array_equal(a["target"], b["target"]):
        raise ValueError("the two replays did not join the same labels")
    keep = a["index"] >= from_index
    y, sa, sb = a["target"][keep], a["served"][keep], b["served"][keep]
    customers, cluster = np.unique(a["entity"][keep], return_inverse=True)
    point = _auc(y, sa) - _auc(y, sb)
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(resamples):
        weight = np.bincount(
            rng.integers(0, len(customers), len(customers)), minlength=len(customers)
        )[cluster]
        chosen = weight > 0
        if y[chosen].min() == y[chosen].max():
            continue
        w = weight[chosen]
        deltas.append(_auc(y[chosen], sa[chosen], w) - _auc(y[chosen], sb[chosen], w))
    lo, hi = np.percentile(deltas, [5, 95]) if deltas else (np.nan, np.nan)
    return {
        "delta": round(float(point), 4),
        "ci90": [round(float(lo), 4), round(float(hi), 4)],
        "labels": int(keep.sum()),
        "positives": int(y.sum()),
        "customers": len(customers),
        "positive_customers": len(np.unique(a["entity"][keep][y == 1])),
    }


def _auc(y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None) -> float:
    return float(roc_auc_score(y, s, sample_weight=w))
