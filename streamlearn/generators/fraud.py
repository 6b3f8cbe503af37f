"""A synthetic card-transaction stream whose fraud labels follow a hidden, drifting risk score.

Events follow the fraud example's schema (DESIGN.md). Generation is vectorised in fixed chunks,
so the stream for a seed is the same however the caller slices it.

Cards differ in how active they are (Zipf-like), how much they spend and how often they travel.
Each transaction's features are drawn first; a logistic risk of those features plus unobserved
noise then decides whether it is fraud, so a linear model can learn it well but not perfectly.
At ``drift_at`` the risk function switches: fraud moves from foreign, large, web purchases at
risky merchants at night to domestic, small, in-app purchases of digital goods in the daytime.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

CHANNELS = ("pos", "web", "app")
_CHANNEL_SHARE = (0.55, 0.30, 0.15)

# Merchant category code: share of traffic, median ticket (EUR), mean merchant risk.
_MERCHANTS = {
    "5411": (0.20, 38.0, 0.05),  # grocery stores
    "5812": (0.12, 32.0, 0.06),  # restaurants
    "5814": (0.10, 11.0, 0.05),  # fast food
    "5541": (0.08, 45.0, 0.07),  # service stations
    "5311": (0.07, 60.0, 0.08),  # department stores
    "5912": (0.06, 22.0, 0.05),  # drug stores
    "4111": (0.06, 3.5, 0.04),  # commuter transport
    "4121": (0.05, 19.0, 0.10),  # taxis and ride-hailing
    "5999": (0.06, 45.0, 0.25),  # miscellaneous retail
    "5732": (0.05, 240.0, 0.20),  # electronics
    "5944": (0.02, 380.0, 0.30),  # jewellery
    "4814": (0.05, 25.0, 0.18),  # telecom services and top-ups
    "5816": (0.05, 9.0, 0.22),  # digital games
    "4829": (0.02, 260.0, 0.45),  # money transfer
    "7995": (0.01, 90.0, 0.55),  # gambling
}
MCC_CODES = tuple(_MERCHANTS)

# Traffic by hour of the merchant's local day: quiet nights, a lunch and an evening peak.
_HOUR_SHARE = np.array(
    [2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 7, 8, 9, 8, 7, 7, 7, 8, 9, 9, 8, 6, 4, 3], dtype=np.float64
)

FIELD_TYPES: dict[str, str] = {
    "amount": "float",
    "merchant_risk": "float",
    "velocity_1h": "float",
    "distance_km": "float",
    "hour": "int",
    "is_foreign": "int",
    "channel": "category",
    "mcc": "category",
}
"""The feature fields and their types, as the ``schema.features`` of a pipeline names them."""

_CHUNK = 4096
_NOISE_SD = 1.0  # unobserved causes of fraud; keeps the best achievable AUC below 1
_CALIBRATION_EVENTS = 100_000


class FraudGenerator:
    """An endless, deterministic stream of card transactions, some of them fraud.

    Parameters
    ----------
    seed
        Fixes the cards and every event; the same seed gives the same stream.
    fraud_rate
        The share of events that are fraud, before and after the drift.
    drift_at
        Index of the first event under the changed fraud pattern; None for no drift.
    n_cards
        How many cards transact.
    start_ms
        Event time of the first event (epoch ms); None means the wall clock at construction.
    rate
        Events per second of event time: ``ts`` advances by ``1000 / rate`` ms per event on
        average, so ``ts`` is non-decreasing and, at high rates, several events share a ms.

    Examples
    --------
    >>> gen = FraudGenerator(seed=7, n_cards=100, start_ms=1_700_000_000_000)
    >>> first = next(gen.events(1))
    >>> sorted(first) == sorted(["event_id", "entity_id", "ts", "is_fraud", *FIELD_TYPES])
    True
    >>> first["event_id"], first["channel"] in CHANNELS, first["ts"] >= 1_700_000_000_000
    ('tx-7-000000000', True, True)
    >>> [e["event_id"] for e in gen.events(2)]  # carries on where the last call stopped
    ['tx-7-000000001', 'tx-7-000000002']
    """

    def __init__(
        self,
        seed: int = 0,
        fraud_rate: float = 0.015,
        drift_at: int | None = None,
        n_cards: int = 5000,
        start_ms: int | None = None,
        rate: float = 1000.0,
    ) -> None:
        if not 0.0 < fraud_rate < 1.0:
            raise ValueError(f"fraud_rate must lie strictly between 0 and 1, got {fraud_rate}")
        if n_cards < 1 or rate <= 0:
            raise ValueError("n_cards must be at least 1 and rate positive")
        self.seed = seed
        self.fraud_rate = fraud_rate
        self.drift_at = drift_at
        self.rate = rate
        self._rng = np.random.default_rng([seed, 0])
        self._cards = _Cards(np.random.default_rng([seed, 1]), n_cards)
        self._bias = _calibrate(self._cards, np.random.default_rng([seed, 2]), fraud_rate)
        self._clock_ms = float(time.time() * 1000 if start_ms is None else start_ms)
        self._index = 0  # index of the next event to generate
        self._buffer: list[dict[str, Any]] = []

    def events(self, n: int) -> Iterator[dict[str, Any]]:
        """Yield the next ``n`` events as JSON-ready dicts of str, int and float values."""
        for _ in range(n):
            if not self._buffer:
                self._buffer = self._chunk()
                self._buffer.reverse()  # pop() from the end is O(1)
            yield self._buffer.pop()

    def _chunk(self) -> list[dict[str, Any]]:
        rng, start = self._rng, self._index
        f = _draw_features(rng, self._cards, _CHUNK)
        noise = rng.normal(0.0, _NOISE_SD, _CHUNK)
        drifted = np.arange(start, start + _CHUNK) >= (
            self.drift_at if self.drift_at is not None else np.inf
        )
        logit = np.where(drifted, _risk_after(f) + self._bias[1], _risk_before(f) + self._bias[0])
        f["is_fraud"] = (rng.random(_CHUNK) < _sigmoid(logit + noise)).astype(np.int64)
        gaps = rng.exponential(1000.0 / self.rate, _CHUNK)
        clock = self._clock_ms + np.cumsum(gaps) - gaps[0]
        self._clock_ms = float(clock[-1] + gaps[0])
        self._index += _CHUNK
        columns = {
            "event_id": [f"tx-{self.seed}-{i:09d}" for i in range(start, start + _CHUNK)],
            "entity_id": self._cards.ids[f["card"]].tolist(),
            "ts": np.floor(clock).astype(np.int64).tolist(),
            **_public_columns(f),
        }
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def fraud_events(
    n: int, *, seed: int = 0, drift_at: int | None = None, **options: Any
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` fraud-example events; ``options`` go to :class:`FraudGenerator`.

    Examples
    --------
    >>> events = list(fraud_events(3, seed=1, start_ms=0))
    >>> [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    True
    >>> {e["is_fraud"] for e in events} <= {0, 1}
    True
    """
    return FraudGenerator(seed=seed, drift_at=drift_at, **options).events(n)


class _Cards:
    """The card population: ids, how often each transacts, spends and travels."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.ids = np.array([f"card-{i:05d}" for i in range(n)], dtype=object)
        # Zipf-like activity, offset so the busiest card is not a runaway share of traffic.
        weights = 1.0 / (rng.permutation(n) + 10.0) ** 1.1
        self.activity = weights / weights.sum()
        self.spend = rng.lognormal(0.0, 0.35, n)  # multiplies every merchant's median ticket
        self.travel = rng.beta(1.0, 40.0, n)  # chance a card-present purchase is abroad
        # Busy cards make more transactions an hour: from ~0 for rare cards up to a cap of 6.
        self.hourly = np.clip(self.activity * n * 0.3, 0.05, 6.0)


def _draw_features(rng: np.random.Generator, cards: _Cards, size: int) -> dict[str, np.ndarray]:
    card = rng.choice(len(cards.ids), size, p=cards.activity)
    mcc = rng.choice(len(MCC_CODES), size, p=_column(0) / _column(0).sum())
    channel = rng.choice(len(CHANNELS), size, p=_CHANNEL_SHARE)
    web = channel == CHANNELS.index("web")
    # Cross-border e-commerce makes web purchases foreign more often than card-present ones.
    is_foreign = rng.random(size) < cards.travel[card] + 0.10 * web
    amount = _column(1)[mcc] * cards.spend[card] * rng.lognormal(0.0, 0.7, size)
    risk_mean = _column(2)[mcc]
    merchant_risk = rng.beta(risk_mean * 8.0, (1.0 - risk_mean) * 8.0)
    # A few transactions come in bursts (card testing, a spree), on top of the card's habit.
    burst = rng.random(size) < 0.03
    velocity = rng.poisson(cards.hourly[card]) + burst * rng.poisson(6.0, size)
    distance = np.where(
        is_foreign, rng.lognormal(np.log(1500.0), 0.9, size), rng.lognormal(np.log(8.0), 1.2, size)
    )
    hour = rng.choice(24, size, p=_HOUR_SHARE / _HOUR_SHARE.sum())
    return {
        "card": card,
        "amount": np.maximum(np.round(amount, 2), 0.5),
        "merchant_risk": np.round(merchant_risk, 4),
        "velocity_1h": velocity.astype(np.float64),
        "distance_km": np.round(distance, 1),
        "hour": hour,
        "is_foreign": is_foreign.astype(np.int64),
        "channel": channel,
        "mcc": mcc,
    }


def _risk_before(f: dict[str, np.ndarray]) -> np.ndarray:
    """Fraud before the drift: large foreign web purchases at risky merchants, at night."""
    return (
        1.4 * f["is_foreign"]
        + 0.8 * _log_amount(f)
        + 0.9 * (f["channel"] == CHANNELS.index("web"))
        + 1.2 * _mcc_in(f, "4829", "7995", "5944", "5732")
        + 0.9 * (f["hour"] < 6)
        + 3.0 * f["merchant_risk"]
        + 0.35 * f["velocity_1h"]
        + 0.15 * np.log1p(f["distance_km"])
    )


def _risk_after(f: dict[str, np.ndarray]) -> np.ndarray:
    """Fraud after the drift: small domestic in-app buys of digital goods, in the daytime."""
    return (
        -1.2 * f["is_foreign"]
        - 0.9 * _log_amount(f)
        + 1.4 * (f["channel"] == CHANNELS.index("app"))
        - 0.6 * (f["channel"] == CHANNELS.index("web"))
        + 1.5 * _mcc_in(f, "5816", "4814", "5999")
        + 0.8 * ((f["hour"] >= 10) & (f["hour"] < 17))
        - 2.0 * f["merchant_risk"]
        + 0.35 * f["velocity_1h"]
        - 0.15 * np.log1p(f["distance_km"])
    )


def _calibrate(cards: _Cards, rng: np.random.Generator, fraud_rate: float) -> tuple[float, float]:
    """Find the intercepts that make each regime's expected fraud share ``fraud_rate``."""
    f = _draw_features(rng, cards, _CALIBRATION_EVENTS)
    noise = rng.normal(0.0, _NOISE_SD, _CALIBRATION_EVENTS)
    return (
        _solve_intercept(_risk_before(f) + noise, fraud_rate),
        _solve_intercept(_risk_after(f) + noise, fraud_rate),
    )


def _solve_intercept(logit: np.ndarray, target: float) -> float:
    # The mean probability rises monotonically with the intercept, so bisection finds it.
    low, high = -40.0, 40.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(logit + mid).mean() < target else (low, mid)
    return (low + high) / 2


def _public_columns(f: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    columns = {name: f[name].tolist() for name in FIELD_TYPES if name not in ("channel", "mcc")}
    columns["channel"] = [CHANNELS[i] for i in f["channel"]]
    columns["mcc"] = [MCC_CODES[i] for i in f["mcc"]]
    columns["is_fraud"] = f["is_fraud"].tolist()
    return columns


def _log_amount(f: dict[str, np.ndarray]) -> np.ndarray:
    # Centred near the median ticket so a weight reads as "per e-fold above a usual amount".
    return np.log(f["amount"]) - 3.5


def _mcc_in(f: dict[str, np.ndarray], *codes: str) -> np.ndarray:
    return np.isin(f["mcc"], [MCC_CODES.index(c) for c in codes])


def _column(i: int) -> np.ndarray:
    return np.array([row[i] for row in _MERCHANTS.values()], dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))
