"""Listen ports of registered integrations: which explicit ports Envoy could never bind,
and which port an integration gets.

A refused port is reported with every reason at once (reserved by this service, privileged,
outside ``listen_port_range``) before anything is stored: one listener Envoy cannot bind
NACKs the whole listener type and takes readiness down with it. Another integration's port
is a conflict (409), checked against the store's assignments, which every replica shares
(the store keeps ports unique, so two replicas racing for one cannot both win).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from control_plane.model import Integration
from control_plane.problems import Problem
from control_plane.store.protocol import ConflictError

__all__ = ["PRIVILEGED_BELOW", "PortPlan"]

PRIVILEGED_BELOW = 1024


class PortPlan:
    def __init__(self, port_range: tuple[int, int], reserved: Mapping[int, str]) -> None:
        self.port_range = port_range
        self.reserved = dict(reserved)  # port -> what listens there

    def problems(self, port: object) -> list[Problem]:
        """Every reason Envoy could not bind an explicit ``listen_port``, at once: refused
        before anything is stored (one such listener NACKs the whole listener type)."""
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            return []  # the schema reports it
        lo, hi = self.port_range
        fix = f"choose a free port in listen_port_range {lo}-{hi}, or omit listen_port"
        problems = []
        if port in self.reserved:
            problems.append(Problem("/listen_port", f"port {port} is {self.reserved[port]}", fix))
        if port < PRIVILEGED_BELOW:
            problems.append(
                Problem(
                    "/listen_port",
                    f"port {port} is privileged (below {PRIVILEGED_BELOW}); Envoy runs "
                    "without the capability to bind it",
                    fix,
                )
            )
        if not lo <= port <= hi:
            problems.append(
                Problem("/listen_port", f"port {port} is outside listen_port_range {lo}-{hi}", fix)
            )
        return problems

    def choose(
        self, item: Integration, assigned: Mapping[str, int], declared: Iterable[Integration]
    ) -> int:
        """The integration's own port, its stable assignment, or the lowest free one;
        ``assigned`` is every port assignment in the store (shared by all replicas),
        ``declared`` the integrations of the file."""
        taken = {p: i for i, p in assigned.items() if i != item.id}
        taken.update({d.listen_port: d.id for d in declared if d.listen_port})
        if item.listen_port is not None:
            owner = taken.get(item.listen_port)
            if owner is not None and owner != item.id:
                raise ConflictError(
                    f"listen_port {item.listen_port} is already used by {owner!r}; choose "
                    "another or omit listen_port to have one assigned"
                )
            return item.listen_port
        if item.id in assigned:
            return assigned[item.id]
        lo, hi = self.port_range
        for port in range(lo, hi + 1):
            if port not in taken:
                return port
        raise ConflictError(f"no free listen port left in {lo}-{hi}; widen listen_port_range")
