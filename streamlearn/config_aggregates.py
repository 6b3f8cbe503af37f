"""The ``schema.aggregates`` section: per-entity streaming features, one float column each.

Each entry names a function of the entity's recent history (``count``, ``sum``, ``mean``, ``min``,
``max``, ``distinct`` over a time window; ``last``, ``since_last`` without one).

Examples
--------
>>> spec = AggregateSpec.model_validate({"fn": "sum", "field": "amount", "window": "1h"})
>>> spec.window_s, spec.fill_value
(3600.0, 0.0)
>>> AggregateSpec.model_validate({"fn": "since_last"}).fill_value
-1.0
>>> AggregateSpec.model_validate({"fn": "mean", "field": "amount"})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for AggregateSpec
  Value error, mean needs a 'window': a duration like 90s, 15m, 1h, 7d or a number of seconds...
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_ALLOWED_LATENESS_S",
    "AggregateFn",
    "AggregateSpec",
    "check_aggregate_fields",
    "parse_duration",
]

DEFAULT_ALLOWED_LATENESS_S = 3600.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_HINT = "a duration like 90s, 15m, 1h, 7d or a number of seconds"
_MIN_WINDOW_S = 1.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class AggregateFn(StrEnum):
    """What an aggregate computes from the entity's earlier events."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    DISTINCT = "distinct"
    LAST = "last"
    SINCE_LAST = "since_last"


WINDOWED = frozenset(
    {
        AggregateFn.COUNT,
        AggregateFn.SUM,
        AggregateFn.MEAN,
        AggregateFn.MIN,
        AggregateFn.MAX,
        AggregateFn.DISTINCT,
    }
)
NUMERIC_FIELD = frozenset(
    {AggregateFn.SUM, AggregateFn.MEAN, AggregateFn.MIN, AggregateFn.MAX, AggregateFn.LAST}
)
# The value a feature takes when nothing is there to aggregate; ``fill`` overrides it where
# the function has no natural value for an empty window (count, sum and distinct are 0 then).
DEFAULT_FILL = {
    AggregateFn.MEAN: 0.0,
    AggregateFn.MIN: 0.0,
    AggregateFn.MAX: 0.0,
    AggregateFn.LAST: 0.0,
    AggregateFn.SINCE_LAST: -1.0,
}


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds or a string like ``90s``, ``15m``, ``1h``, ``7d``.

    >>> parse_duration("90s"), parse_duration("1.5h"), parse_duration(30), parse_duration("2w")
    (90.0, 5400.0, 30.0, 1209600.0)
    >>> parse_duration("1 hour")
    Traceback (most recent call last):
    ...
    ValueError: expected a duration like 90s, 15m, 1h, 7d or a number of seconds, got '1 hour'
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    else:
        raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    return seconds


class AggregateSpec(BaseModel):
    """One aggregate: ``{fn: FN, field: FIELD, window: DURATION, fill: VALUE}``.

    ``window`` is required by ``count``, ``sum``, ``mean``, ``min``, ``max`` and ``distinct``
    and refused by ``last`` and ``since_last``. ``field`` names a numeric feature for ``sum``,
    ``mean``, ``min``, ``max`` and ``last``, a category feature for ``distinct``, and is optional
    for ``count`` (then only events carrying the field are counted); ``since_last`` takes none.
    ``fill`` is the value of ``mean``/``min``/``max`` over an empty window (default 0), of
    ``last`` with no earlier event (default 0) and of ``since_last`` with none (default -1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fn: AggregateFn
    field: str | None = None
    window_s: float | None = Field(default=None, alias="window")
    fill: float | None = None

    @field_validator("window_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        if value is None:
            return None
        seconds = parse_duration(value)
        if seconds < _MIN_WINDOW_S:
            raise ValueError(f"expected a window of at least 1s, got {value!r}")
        return seconds

    @field_validator("fill")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AggregateSpec:
        fn = self.fn.value
        if self.fn in WINDOWED and self.window_s is None:
            raise ValueError(f"{fn} needs a 'window': {_DURATION_HINT}")
        if self.fn not in WINDOWED and self.window_s is not None:
            raise ValueError(f"{fn} takes no 'window' (it looks at the previous event only)")
        if self.field is None and (self.fn in NUMERIC_FIELD or self.fn == AggregateFn.DISTINCT):
            raise ValueError(f"{fn} needs a 'field': the feature field it aggregates")
        if self.field is not None and self.fn == AggregateFn.SINCE_LAST:
            raise ValueError("since_last takes no 'field' (it measures time between events)")
        if self.fill is not None and self.fn not in DEFAULT_FILL:
            raise ValueError(f"{fn} takes no 'fill' ({fn} of an empty window is 0)")
        return self

    @property
    def fill_value(self) -> float:
        """The feature's value when there is nothing to aggregate."""
        if self.fill is not None:
            return self.fill
        return DEFAULT_FILL.get(self.fn, 0.0)


def check_aggregate_fields(
    aggregates: Mapping[str, AggregateSpec], features: Mapping[str, Any]
) -> None:
    """Raise ``ValueError`` naming the aggregate whose field is not a feature of the right type.

    ``features`` maps each feature field to its type (``"float"``, ``"int"``, ``"bool"``,
    ``"category"``) or to an object with that type as ``.type`` (a ``FeatureSpec``).

    >>> specs = {"spend": AggregateSpec(fn="sum", field="channel", window="1h")}
    >>> check_aggregate_fields(specs, {"amount": "float", "channel": "category"})
    Traceback (most recent call last):
    ...
    ValueError: aggregates.spend.field: sum needs a numeric feature field, 'channel' is a category
    """
    types = {name: str(getattr(spec, "type", spec)) for name, spec in features.items()}
    for name, spec in aggregates.items():
        if not _NAME.match(name):
            raise ValueError(
                f"aggregates.{name}: expected a name of letters, digits, '_', '.' or '-' "
                "starting with a letter or '_'"
            )
        if name in types:
            raise ValueError(
                f"aggregates.{name}: {name!r} is already a feature field; name the aggregate "
                "differently"
            )
        _check_field(name, spec, types)


def _check_field(name: str, spec: AggregateSpec, types: Mapping[str, str]) -> None:
    if spec.field is None:
        return
    where = f"aggregates.{name}.field"
    kind = types.get(spec.field)
    if kind is None:
        known = ", ".join(sorted(types)) or "none"
        raise ValueError(
            f"{where}: {spec.field!r} is not a feature field of the schema (features: {known})"
        )
    if spec.fn == AggregateFn.DISTINCT and kind != "category":
        raise ValueError(
            f"{where}: distinct needs a category feature field, {spec.field!r} is {kind}"
        )
    if spec.fn in NUMERIC_FIELD and kind == "category":
        raise ValueError(
            f"{where}: {spec.fn.value} needs a numeric feature field, {spec.field!r} is a category"
        )
