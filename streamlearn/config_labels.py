"""The ``labels:`` block of a pipeline: labels that arrive later, on a topic of their own.

>>> LabelsConfig(topic="churn-labels", id="event_id", target="churned", horizon_s=3600)
LabelsConfig(topic='churn-labels', id='event_id', target='churned', horizon_s=3600.0)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LabelsConfig(BaseModel):
    """Where delayed labels come from and how long a scored event waits for its label.

    ``id`` names the field of a label message that holds the scored event's id, ``target``
    the field holding 0/1. ``horizon_s`` is how long (in event time) an event's features and
    served score are kept for its label, and how long a label waits for an event not seen yet.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(min_length=1)
    id: str = Field(min_length=1)
    target: str = Field(min_length=1)
    horizon_s: float = Field(gt=0)
