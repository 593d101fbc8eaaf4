"""What a busy gateway's operators read: Prometheus metrics and one access-log line per request.

:class:`Observe` is a pure ASGI middleware around the whole app. Per request it keeps a
:class:`Record` in a context variable; the service fills in the decision and the guard's and the
upstream's latencies (:func:`current`), and when the response ends the middleware logs one line

    access route=/v1/chat/completions status=200 decision=refuse guard_ms=12.4 upstream_ms=- total_ms=13.1

and updates the metrics served at ``GET /metrics``. Neither ever holds request or answer text,
concept ids or keys: routes are the known ones (anything else is ``other``), decisions are the
policy names.

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``nescio serve --workers N``)
puts prometheus_client in its multiprocess mode: each worker writes its values to files there and
a scrape, whichever worker answers it, sums counters and histograms over all workers and shows
``nescio_concept_list_version`` once per live worker (label ``pid``), so a scrape shows whether
every worker enforces the latest list. ``nescio_concepts`` and ``nescio_concept_list_info``
describe the list of the worker that answered.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guards.concepts import ConceptList

log = logging.getLogger("nescio.access")
ROUTES = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready", "/metrics",
    "/admin/concepts", "/admin/reload",
})  # fmt: skip
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Record:
    """One request as the access log and the metrics see it."""

    route: str
    decision: str = "-"
    guard_s: float | None = None
    upstream_s: float | None = None


_CURRENT: ContextVar[Record | None] = ContextVar("nescio_request_record", default=None)


def current() -> Record | None:
    """The record of the request being served (``None`` outside one)."""
    return _CURRENT.get()


class ConceptListCollector(Collector):
    """``nescio_concepts`` (how many) and ``nescio_concept_list_info`` (its content hash, the
    version every replica can be compared on), read from the list in force at scrape time."""

    def __init__(self, concepts: Callable[[], ConceptList]) -> None:
        self._concepts = concepts

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        concepts = self._concepts()
        count = GaugeMetricFamily("nescio_concepts", "Concepts in the list in force")
        count.add_metric([], len(concepts.concepts))
        info = InfoMetricFamily("nescio_concept_list", "Version of the concept list in force")
        info.add_metric([], {"version": concepts.content_hash()[:16]})
        yield count
        yield info


class Metrics:
    """The proxy's metrics, on a registry of their own (one per app, so tests can build many)."""

    def __init__(self, concepts: Callable[[], ConceptList]) -> None:
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nescio_requests", "Requests answered", ["route", "decision", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "nescio_in_flight_requests", "Requests being served", registry=self.registry,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.concept_version = Gauge(
            "nescio_concept_list_version",
            "Changes applied to the concept list since the start (admin API), per worker",
            registry=self.registry, multiprocess_mode="liveall",
        )  # fmt: skip
        self.request_seconds = Histogram(
            "nescio_request_seconds", "Time to the end of the response", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.guard_seconds = Histogram(
            "nescio_guard_seconds", "Time the guard took to screen a request",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "nescio_upstream_seconds", "Time to the upstream's response headers",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._concepts = ConceptListCollector(concepts)
        self.registry.register(self._concepts)

    def exposition(self) -> bytes:
        """The text a scrape reads: this process's registry, or with several workers the sum
        over all of them (see the module docstring)."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self._multiprocess_dir)  # type: ignore[no-untyped-call]
        registry.register(self._concepts)
        return generate_latest(registry)

    def close(self) -> None:
        """At shutdown: with several workers, drop this one from the live gauges."""
        if self._multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self._multiprocess_dir)  # type: ignore[no-untyped-call]


class Observe:
    """Times every HTTP request, logs its access line and counts it in :class:`Metrics`."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        record = Record(path if path in ROUTES else "other")
        token = _CURRENT.set(record)
        status = 500  # what the client gets if the app fails before answering
        started = time.perf_counter()
        self.metrics.in_flight.inc()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _CURRENT.reset(token)
            self.metrics.in_flight.dec()
            self._finish(record, status, time.perf_counter() - started)

    def _finish(self, record: Record, status: int, total_s: float) -> None:
        metrics = self.metrics
        metrics.requests.labels(record.route, record.decision, str(status)).inc()
        metrics.request_seconds.labels(record.route).observe(total_s)
        if record.guard_s is not None:
            metrics.guard_seconds.observe(record.guard_s)
        if record.upstream_s is not None:
            metrics.upstream_seconds.observe(record.upstream_s)
        log.info(
            "access route=%s status=%d decision=%s guard_ms=%s upstream_ms=%s total_ms=%.1f",
            record.route, status, record.decision, _ms(record.guard_s),
            _ms(record.upstream_s), total_s * 1000,
        )  # fmt: skip


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"
