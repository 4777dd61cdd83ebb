"""Component (outbound) policies, applied at one seam: the operations of each configured
component with a policy are wrapped once, at start, so every front end and every building
block's service (state, publish, bindings, locks, ...) calls through the policy.

A failure here is the backend's: BackendUnavailable, BackendError, DeadlineExceeded, or an
OSError / TimeoutError escaping the component. Those are counted by the breaker and retried;
every other error (an etag mismatch, a missing secret, a bad argument) is the request's own
outcome: the breaker counts it as a success and it is never retried.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from layotto.server.components.base import ConfigError
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import BackendError, BackendUnavailable, DeadlineExceeded
from layotto.server.runtime.resiliency.policy import Policy, Verdict

if TYPE_CHECKING:
    from layotto.server.runtime.resiliency import Resiliency

#: the operations guarded per building block (the calls the runtime makes on a client's behalf)
OUTBOUND_OPERATIONS: dict[str, tuple[str, ...]] = {
    "state": ("get", "bulk_get", "set", "delete", "bulk_write", "transact"),
    "pubsub": ("publish",),
    "bindings": ("invoke",),
    "lock": ("try_lock", "unlock", "keep_alive"),
    "secret_store": ("get", "bulk_get"),
    "config_store": ("get", "save", "delete"),
    "sequencer": ("next_block",),
    "crypto": ("key", "public_key", "wrap", "unwrap", "encrypt", "decrypt", "sign", "verify"),
}
#: the components whose guarded call is under way in this task: a component calling its own
#: guarded operation (a bulk_get made of gets) goes straight through, not under the policy twice
_INSIDE: ContextVar[frozenset[int]] = ContextVar("layotto_resiliency_inside", default=frozenset())


def backend_verdict(error: Exception) -> Verdict:
    """Backend trouble is retried; any other error is the request's own outcome."""
    if isinstance(error, BackendUnavailable | BackendError | DeadlineExceeded | OSError | TimeoutError):
        return Verdict.RETRY
    return Verdict.SUCCESS


def _guarded(component: object, method: Callable[..., Awaitable[Any]], policy: Policy) -> Callable[..., Any]:
    key = id(component)

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        inside = _INSIDE.get()
        if key in inside:
            return await method(*args, **kwargs)
        token = _INSIDE.set(inside | {key})
        try:
            return await policy.run(lambda _seconds: method(*args, **kwargs), judge_error=backend_verdict)
        finally:
            _INSIDE.reset(token)

    return call


def guard_components(components: ComponentSet, resiliency: Resiliency) -> None:
    """Put every component named by an outbound target under its policy; a target naming no
    configured component is a ConfigError."""
    named = {component.name for _, component in components}
    for name in resiliency.spec.outbound:
        if name not in named:
            choices = ", ".join(sorted(named)) or "none"
            raise ConfigError(
                f"resiliency: targets.components.{name}: no component named {name!r} is configured"
                f" (configured: {choices})"
            )
    for block, component in components:
        policy = resiliency.outbound(component.name)
        if policy is None:
            continue
        for operation in OUTBOUND_OPERATIONS.get(block, ()):
            method = getattr(component, operation, None)
            if method is not None:
                setattr(component, operation, _guarded(component, method, policy))
