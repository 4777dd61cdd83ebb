"""Component policies. Outbound ones are applied at one seam: the operations of each configured
component with a policy are wrapped once, at start, so every front end and every building
block's service (state, publish, bindings, locks, ...) calls through the policy. Inbound ones
(the runtime delivering a pub/sub message or an input binding's event to the app) are applied by
the deliverers through :func:`inbound_call`.

A failure here is the backend's: BackendUnavailable, BackendError, DeadlineExceeded, or an
OSError / TimeoutError escaping the component. Those are counted by the breaker and retried;
every other error (an etag mismatch, a missing secret, a bad argument) is the request's own
outcome: the breaker counts it as a success and it is never retried.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from layotto.server.components.base import Component, ConfigError
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import BackendError, BackendUnavailable, DeadlineExceeded
from layotto.server.runtime.resiliency.policy import Policy, Verdict

if TYPE_CHECKING:
    from layotto.server.runtime.resiliency import Resiliency

T = TypeVar("T")
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


async def inbound_call(
    policy: Policy | None,
    call: Callable[[float], Awaitable[T]],
    default_timeout: float,
    judge_answer: Callable[[T], Verdict] = lambda _: Verdict.SUCCESS,
) -> T:
    """``call(seconds)`` to the app under a component's inbound policy (None: once, as before);
    each attempt has the policy's timeout, else ``default_timeout``. Any error is retried."""
    if policy is None:
        return await call(default_timeout)
    return await policy.run(
        lambda seconds: call(default_timeout if seconds is None else seconds),
        judge_error=lambda _error: Verdict.RETRY,
        judge_answer=judge_answer,
    )


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


#: the building blocks whose components deliver to the app (Dapr's inbound direction)
INBOUND_BLOCKS = ("pubsub", "bindings")


def _check_targets(components: ComponentSet, resiliency: Resiliency) -> None:
    blocks: dict[str, set[str]] = {}
    for block, component in components:
        blocks.setdefault(component.name, set()).add(block)
    for name in [*resiliency.spec.outbound, *resiliency.spec.inbound]:
        if name not in blocks:
            choices = ", ".join(sorted(blocks)) or "none"
            raise ConfigError(
                f"resiliency: targets.components.{name}: no component named {name!r} is configured"
                f" (configured: {choices})"
            )
    for name in resiliency.spec.inbound:
        if not blocks[name] & set(INBOUND_BLOCKS):
            raise ConfigError(
                f"resiliency: targets.components.{name}.inbound: only pub/sub and input binding components"
                f" deliver to the app ({name!r} is a {', '.join(sorted(blocks[name]))} component)"
            )


def guard_components(components: ComponentSet, resiliency: Resiliency) -> None:
    """Put every component named by an outbound target under its policy. A target naming no
    configured component, or an inbound one naming neither a pub/sub nor a binding, is a
    ConfigError."""
    _check_targets(components, resiliency)
    for block, component in components:
        guard_component(block, component, resiliency)


def guard_component(block: str, component: Component, resiliency: Resiliency) -> None:
    """Put one component of ``block`` under its outbound policy, if a target names it (also
    used for a component built by live reconfiguration)."""
    policy = resiliency.outbound(component.name)
    if policy is None:
        return
    for operation in OUTBOUND_OPERATIONS.get(block, ()):
        method = getattr(component, operation, None)
        if method is not None:
            setattr(component, operation, _guarded(component, method, policy))
