"""Resiliency: Dapr's timeouts, retries and circuit breakers, per target app and per component.

:mod:`.spec` parses ``kind: Resiliency`` specs, :mod:`.breaker` and :mod:`.policy` run calls
under them; :class:`Resiliency` holds one :class:`Policy` (and breaker) per target, applied by
the invoker (``targets.apps``, on the calling side) and by :func:`guard_components`
(``targets.components.<name>.outbound``: every call the runtime makes to that component) and
the deliverers to the app (``inbound``: pub/sub callbacks and input binding events, through
:func:`inbound_call`).
"""

from __future__ import annotations

from layotto.server.runtime.resiliency.outbound import guard_component, guard_components, inbound_call
from layotto.server.runtime.resiliency.policy import Policy, Verdict, matches
from layotto.server.runtime.resiliency.spec import ResiliencySpec, parse_resiliency


class Resiliency:
    """The policies of one runtime, by target."""

    def __init__(self, spec: ResiliencySpec) -> None:
        self.spec = spec
        self._apps = {app_id: Policy(f"app {app_id!r}", target) for app_id, target in spec.apps.items()}
        self._outbound = {name: Policy(f"component {name!r}", target) for name, target in spec.outbound.items()}
        self._inbound = {name: Policy(f"component {name!r} (inbound)", target) for name, target in spec.inbound.items()}

    def app(self, app_id: str) -> Policy | None:
        """The policy of invocations of ``app_id`` (None: calls go once, with the caller's deadline)."""
        return self._apps.get(app_id)

    def outbound(self, component: str) -> Policy | None:
        """The policy of the runtime's calls to the component named ``component``."""
        return self._outbound.get(component)

    def inbound(self, component: str) -> Policy | None:
        """The policy of deliveries from the component named ``component`` to the app."""
        return self._inbound.get(component)


__all__ = [
    "Policy",
    "Resiliency",
    "ResiliencySpec",
    "Verdict",
    "guard_component",
    "guard_components",
    "inbound_call",
    "matches",
    "parse_resiliency",
]
