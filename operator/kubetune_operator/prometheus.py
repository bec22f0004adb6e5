"""Prometheus metrics of the operator, served on KUBETUNE_METRICS_PORT at /metrics.

A registry of our own (not the process-wide default) so that several operators in one
process (tests) do not collide, and so /metrics shows exactly these plus the process
collector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

from kubetune_api.outcomes import PHASES


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        ProcessCollector(registry=self.registry)
        self.jobs_by_phase = Gauge("kubetune_finetunejobs", "FineTuneJobs by phase.", ["phase"], registry=self.registry)
        for phase in PHASES:
            self.jobs_by_phase.labels(phase=phase).set(0)
        self.reconcile_errors = Counter(
            "kubetune_reconcile_errors", "Reconciliations that failed (retried with backoff).", registry=self.registry
        )
        self.job_creation_seconds = Histogram(
            "kubetune_job_creation_seconds",
            "Time from FineTuneJob creation to its batch/v1 Job created.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )

    def phase_changed(self, old: str | None, new: str | None) -> None:
        """One FineTuneJob moved from `old` to `new` (None: not tracked): O(1) per reconcile."""
        if old == new:
            return
        if old is not None:
            self.jobs_by_phase.labels(phase=old).dec()
        if new is not None:
            self.jobs_by_phase.labels(phase=new).inc()

    def serve(self, port: int) -> WSGIServer:
        """Serve /metrics on 0.0.0.0:port in a daemon thread; shutdown() the result to stop."""
        server, _ = start_http_server(port, registry=self.registry)
        return server
