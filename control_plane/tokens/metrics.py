"""Prometheus metrics of the broker, read from its state at scrape time.

``integration_service_token_refresh_total{integration, result}``: ``success`` (this replica
fetched a token), ``failure`` (a refresh failed), ``shared`` (adopted the token another
replica fetched). ``integration_service_token_seconds_to_expiry{integration}``: seconds
until the injected token expires; 0 while none is injected (expired or never obtained).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.tokens.broker import TokenBroker

__all__ = ["TokenCollector"]

PREFIX = "integration_service_"


class TokenCollector(Collector):
    def __init__(self, broker: TokenBroker, now: Callable[[], float]) -> None:
        self._broker, self._now = broker, now

    def collect(self) -> Iterator[Metric]:
        refreshes = CounterMetricFamily(
            PREFIX + "token_refresh",
            "OAuth2 token refreshes by integration and result (success, failure, shared)",
            labels=["integration", "result"],
        )
        for (ident, result), count in sorted(self._broker.tally.items()):
            refreshes.add_metric([ident, result], count)
        yield refreshes
        expiry = GaugeMetricFamily(
            PREFIX + "token_seconds_to_expiry",
            "Seconds until the injected OAuth2 token expires (0: none injected)",
            labels=["integration"],
        )
        now = self._now()
        for ident, status in self._broker.statuses().items():
            left = (status.expires_at or now) - now if status.injecting else 0.0
            expiry.add_metric([ident], max(0.0, left))
        yield expiry

    def describe(self) -> Iterable[Metric]:
        return []
