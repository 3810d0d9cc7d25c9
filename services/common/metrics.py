"""Prometheus metrics: requests, latency, queue depth, rejections, fallbacks (one registry per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceMetrics:
    """The collectors one service exports at /metrics.

    A registry per app (not the global one) so several apps can live in one process (tests,
    the in-process gateway) without duplicate-registration errors.
    """

    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("cascade_http_requests_total", "HTTP requests by route and status",
                                ["service", "method", "route", "status"], registry=r)
        self.latency = Histogram("cascade_http_request_seconds", "Request latency by route",
                                 ["service", "route"], buckets=_BUCKETS, registry=r)
        self.queue_depth = Gauge("cascade_queue_waiting", "Requests waiting for a model slot", ["model"], registry=r)
        self.queue_running = Gauge("cascade_queue_running", "Requests running on a model", ["model"], registry=r)
        self.rejected = Counter("cascade_queue_rejected_total", "Requests turned away by the admission queue",
                                ["model", "reason"], registry=r)
        self.fallbacks = Counter("cascade_fallbacks_total", "Degraded answers (a stage down or a guard fired)",
                                 ["stage", "reason"], registry=r)
        self.batches = Counter("cascade_asr_batches_total", "Batched decodes of concurrent transcription requests",
                               ["model"], registry=r)
        self.batched_requests = Counter("cascade_asr_batched_requests_total",
                                        "Transcription requests answered by a batched decode", ["model"], registry=r)
        self.stage_latency = Histogram("cascade_stage_seconds", "Time spent in each pipeline stage",
                                       ["stage"], buckets=_BUCKETS, registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
