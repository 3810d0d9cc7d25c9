"""Annotated dependency aliases shared by the services (STYLE rule 9)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cascade.config import Settings
from services.common.metrics import ServiceMetrics
from services.common.queue import Queues


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_queues(request: Request) -> Queues:
    return request.app.state.queues


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
QueuesDep = Annotated[Queues, Depends(get_queues)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
