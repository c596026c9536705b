"""Prometheus metrics of one control-plane instance, in its own ``CollectorRegistry``.

Each :class:`ServiceMetrics` owns a private registry (never prometheus-client's global
``REGISTRY``), so several apps in one process — tests, mostly — do not clash over metric
names. Two kinds of metric live here:

* **instrumented** ones, updated as things happen: API latency (by the API middleware),
  xDS ACKs / NACKs (listeners on :class:`~control_plane.xds.cache.XdsStatus`) and published
  events (:meth:`ServiceMetrics.event_published`, called by the event publisher);
* **collected** ones, read from live state at scrape time by :class:`StateCollector`:
  xDS pushes (``TypeStatus.push_count``), the served config version, registry size and
  probe results. Reading at scrape time keeps them exact without hooks in those modules.

Metric names start with ``integration_service_``.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from control_plane.model import Integration
from control_plane.probing.book import ProbeBook
from control_plane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from control_plane.xds.status import XdsStatus

__all__ = ["PREFIX", "MetricSources", "ServiceMetrics", "StateCollector", "xds_type_label"]

PREFIX = "integration_service_"

_TYPE_LABELS = {
    CLUSTER: "cluster",
    ENDPOINT: "endpoint",
    LISTENER: "listener",
    ROUTE: "route",
    SECRET: "secret",
}

# Management-API latencies are milliseconds unless Envoy's admin API is slow (the status
# endpoints read it) or a circuit-breaker reset waits for the ACK (up to 5 s).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def xds_type_label(type_url: str) -> str:
    """``cluster`` / ``endpoint`` / ``listener`` / ``route`` / ``secret`` for a type URL."""
    return _TYPE_LABELS.get(type_url, type_url.rsplit(".", 1)[-1].lower())


@dataclass(frozen=True, slots=True)
class ConfigSample:
    """The served configuration as the collector reports it."""

    version: str | None
    error: str | None
    pushes: int


@dataclass(frozen=True, slots=True)
class MetricSources:
    """Where :class:`StateCollector` reads live state at scrape time."""

    xds: XdsStatus
    integrations: Callable[[], Iterable[Integration]]
    config: Callable[[], ConfigSample]
    probes: ProbeBook
    # The store's reachability at its last background check (None before the first).
    store_up: Callable[[], bool | None] = lambda: None
    # Shared topology: xDS connections refused by the TLS gate, by reason.
    xds_refusals: Callable[[], Mapping[str, int]] = lambda: {}


class StateCollector(Collector):
    """Metrics derived from live state on every scrape (nothing cached between scrapes)."""

    def __init__(self, sources: MetricSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._xds()
        yield from self._config()
        items = list(self._sources.integrations())
        yield from self._registry(items)
        yield from self._probes(items)

    def describe(self) -> Iterable[Metric]:
        # Describing nothing tells the registry not to call collect() at registration.
        return ()

    def _xds(self) -> Iterator[Metric]:
        pushes = CounterMetricFamily(
            PREFIX + "xds_pushes",
            "xDS responses sent to Envoy nodes, by resource type",
            labels=["type"],
        )
        state = GaugeMetricFamily(
            PREFIX + "xds_type_state",
            "Delivery state per node and resource type (1 for the current state)",
            labels=["node", "type", "state"],
        )
        connected = GaugeMetricFamily(
            PREFIX + "xds_node_connected",
            "1 while the node has an open ADS stream",
            labels=["node"],
        )
        workloads = GaugeMetricFamily(
            PREFIX + "xds_workload_nodes",
            "Shared topology: connected nodes per workload and configuration state "
            "(nodes of a workload are counted, not listed: a fleet has many)",
            labels=["workload", "state"],
        )
        refused = CounterMetricFamily(
            PREFIX + "xds_connections_refused",
            "Shared topology: xDS connections refused (no or untrusted client certificate, "
            "an identity no workload has, a handshake that timed out)",
            labels=["reason"],
        )
        for reason, count in sorted(self._sources.xds_refusals().items()):
            refused.add_metric([reason], float(count))
        per_workload: Tally[tuple[str, str]] = Tally()
        totals: Tally[str] = Tally()
        for node in self._sources.xds.nodes():
            if node.workload is not None:
                for type_url, status in node.types.items():
                    totals[xds_type_label(type_url)] += status.push_count
                if node.connected:
                    states = {s.state for s in node.types.values() if s.state != "idle"}
                    worst = next(
                        (x for x in ("nacked", "pending") if x in states),
                        "acked" if states else "pending",
                    )
                    per_workload[(node.workload, worst)] += 1
                continue
            connected.add_metric([node.node_id], 1.0 if node.connected else 0.0)
            for type_url, status in sorted(node.types.items()):
                label = xds_type_label(type_url)
                totals[label] += status.push_count
                state.add_metric([node.node_id, label, status.state], 1.0)
        for label, count in sorted(totals.items()):
            pushes.add_metric([label], float(count))
        for (workload, node_state), count in sorted(per_workload.items()):
            workloads.add_metric([workload, node_state], float(count))
        yield pushes
        yield state
        yield connected
        yield workloads
        yield refused

    def _config(self) -> Iterator[Metric]:
        sample = self._sources.config()
        info = InfoMetricFamily(
            PREFIX + "config", "The configuration snapshot version being served"
        )
        info.add_metric([], {"version": sample.version or ""})
        yield info
        yield GaugeMetricFamily(
            PREFIX + "config_error",
            "1 while the latest registry state could not be translated (the previous "
            "snapshot stays in force)",
            value=1.0 if sample.error else 0.0,
        )
        yield CounterMetricFamily(
            PREFIX + "config_snapshots",
            "Distinct configuration snapshots built and served since start",
            value=float(sample.pushes),
        )
        store_up = self._sources.store_up()
        if store_up is not None:
            yield GaugeMetricFamily(
                PREFIX + "store_up",
                "1 while the registry store answers its background ping; writes answer 503 "
                "without it (the data path and readiness do not depend on it)",
                value=1.0 if store_up else 0.0,
            )

    def _registry(self, items: list[Integration]) -> Iterator[Metric]:
        sizes = GaugeMetricFamily(
            PREFIX + "registry_integrations",
            "Integrations in the registry, by kind and source (declared file or API)",
            labels=["kind", "source", "enabled"],
        )
        tally = Tally((i.kind, i.source, "true" if i.enabled else "false") for i in items)
        for (kind, source, enabled), count in sorted(tally.items()):
            sizes.add_metric([kind, source, enabled], float(count))
        yield sizes
        quota = GaugeMetricFamily(
            PREFIX + "rate_limit_quota_per_second",
            "The integration's configured quota in requests per second (for the whole fleet "
            "with scope fleet or global, per Envoy with scope pod): what the quota burn-down "
            "panel and the 80 % alert divide by",
            labels=["integration", "scope"],
        )
        for item in sorted(items, key=lambda i: i.id):
            rl = item.policies.rate_limit
            if item.enabled and rl is not None:
                quota.add_metric([item.id, rl.scope], rl.bucket.requests / rl.bucket.per)
        yield quota

    def _probes(self, items: list[Integration]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            PREFIX + "probe_success",
            "1 if the integration's last probe through the sidecar succeeded, else 0",
            labels=["integration", "kind"],
        )
        latency = GaugeMetricFamily(
            PREFIX + "probe_latency_seconds",
            "Duration of the integration's last probe",
            labels=["integration", "kind"],
        )
        age = GaugeMetricFamily(
            PREFIX + "probe_timestamp_seconds",
            "Unix time of the integration's last probe",
            labels=["integration", "kind"],
        )
        for item in sorted(items, key=lambda i: i.id):
            result = self._sources.probes.last(item.id)
            if result is None:
                continue
            labels = [item.id, item.kind]
            up.add_metric(labels, 1.0 if result.ok else 0.0)
            latency.add_metric(labels, result.latency_ms / 1000.0)
            age.add_metric(labels, result.at.timestamp())
        yield up
        yield latency
        yield age


class ServiceMetrics:
    """The metrics of one app; ``registry`` is what ``GET /metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.api_latency = Histogram(
            PREFIX + "api_request_duration_seconds",
            "Management API request latency by route template, method and status",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.xds_acks = Counter(
            PREFIX + "xds_acks",
            "xDS responses ACKed by Envoy nodes, by resource type",
            ["type"],
            registry=self.registry,
        )
        self.xds_nacks = Counter(
            PREFIX + "xds_nacks",
            "xDS responses rejected (NACKed) by Envoy nodes, by resource type",
            ["type"],
            registry=self.registry,
        )
        self.events = Counter(
            PREFIX + "events_published",
            "Events published (CloudEvents), by type",
            ["type"],
            registry=self.registry,
        )
        self._collector: StateCollector | None = None

    def attach(self, sources: MetricSources) -> None:
        """Collect state metrics from ``sources`` and count ACKs / NACKs of ``sources.xds``."""
        if self._collector is not None:
            raise RuntimeError("metrics are already attached to their sources")
        self._collector = StateCollector(sources)
        self.registry.register(self._collector)
        sources.xds.on_ack.append(self._on_ack)
        sources.xds.on_nack.append(self._on_nack)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.api_latency.labels(route, method, str(status)).observe(seconds)

    def event_published(self, event_type: str) -> None:
        """Count one published event (``integration_service_events_published_total``)."""
        self.events.labels(event_type).inc()

    def _on_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.xds_acks.labels(xds_type_label(type_url)).inc()

    def _on_nack(self, node_id: str, type_url: str, version: str, message: str) -> None:
        self.xds_nacks.labels(xds_type_label(type_url)).inc()
