"""The permission matrix: which role each management-API operation needs.

Every route the app serves has one row, keyed by method and route template; a route
missing from the matrix needs ``admin`` (fail closed), and a test enumerates the router
so that a new endpoint cannot slip in unclassified.

========================================================  ==========  =====================
operation                                                 role        audited action
========================================================  ==========  =====================
GET /health, /health/live, /health/ready, /openapi.json   public      -
GET /metrics                                              public, or viewer with metrics_auth
GET /integrations, /integrations/{id} and its reads       viewer      -
  (status, health, rate-limit, cache, circuit-breaker)
POST /integrations/{id}/test                              operator    integration.test
POST /integrations/{id}/cache/clear                       operator    integration.cache_clear
POST /integrations/{id}/circuit-breaker/reset             operator    integration.breaker_reset
POST /integrations, PUT/DELETE /integrations/{id}         admin       integration.create/…
GET/POST /api-keys, DELETE /api-keys/{key_id}             admin       api_key.create/revoke
GET /audit                                                admin       -
========================================================  ==========  =====================

Tenancy is orthogonal: a principal of tenant T sees only objects of T (others answer
404, exactly like ids that do not exist); the tenant ``*`` sees all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MATRIX", "PUBLIC", "Rule", "rule_for"]


@dataclass(frozen=True, slots=True)
class Rule:
    """``role`` None: no credentials needed. ``action`` set: successful calls are audited."""

    role: str | None
    action: str | None = None

    @property
    def public(self) -> bool:
        return self.role is None


PUBLIC = Rule(None)
_VIEW = Rule("viewer")
_ONE = "/integrations/{integration_id}"

MATRIX: Mapping[tuple[str, str], Rule] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # viewer when metrics_auth is set (see rule_for)
    ("GET", "/integrations"): _VIEW,
    ("POST", "/integrations"): Rule("admin", "integration.create"),
    ("GET", _ONE): _VIEW,
    ("PUT", _ONE): Rule("admin", "integration.update"),
    ("DELETE", _ONE): Rule("admin", "integration.delete"),
    ("GET", _ONE + "/status"): _VIEW,
    ("GET", _ONE + "/health"): _VIEW,
    ("POST", _ONE + "/test"): Rule("operator", "integration.test"),
    ("GET", _ONE + "/rate-limit"): _VIEW,
    ("GET", _ONE + "/cache"): _VIEW,
    ("POST", _ONE + "/cache/clear"): Rule("operator", "integration.cache_clear"),
    ("GET", _ONE + "/circuit-breaker"): _VIEW,
    ("POST", _ONE + "/circuit-breaker/reset"): Rule("operator", "integration.breaker_reset"),
    ("GET", "/api-keys"): Rule("admin"),
    ("POST", "/api-keys"): Rule("admin", "api_key.create"),
    ("DELETE", "/api-keys/{key_id}"): Rule("admin", "api_key.revoke"),
    ("GET", "/audit"): Rule("admin"),
    # The status page: the shell and its assets hold no data; what it shows needs the
    # caller's credentials like the API (and is scoped to the caller's tenant).
    ("GET", "/ui"): PUBLIC,
    ("GET", "/ui/static/{name}"): PUBLIC,
    ("GET", "/ui/fragments/overview"): _VIEW,
    ("GET", "/ui/fragments/integrations/{integration_id}"): _VIEW,
    ("GET", "/ui/stream"): _VIEW,
}

_FAIL_CLOSED = Rule("admin")


def rule_for(method: str, template: str, *, metrics_auth: bool = False) -> Rule:
    """The rule of one route; HEAD is GET; unknown routes need admin."""
    key = ("GET" if method == "HEAD" else method, template)
    if key == ("GET", "/metrics") and metrics_auth:
        return _VIEW
    return MATRIX.get(key, _FAIL_CLOSED)
