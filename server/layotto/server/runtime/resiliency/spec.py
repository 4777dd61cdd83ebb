"""Dapr's resiliency spec (``kind: Resiliency``, apiVersion dapr.io/v1alpha1), parsed and checked.

The shape is the manifest's ``spec`` (also accepted as the runtime config's ``resiliency:``)::

    policies:
      timeouts: {general: 5s}                      # name -> Go duration
      retries:
        retryFive: {policy: constant, duration: 100ms, maxRetries: 5}
        backoff: {policy: exponential, maxInterval: 2s, maxRetries: -1}    # -1: unlimited
      circuitBreakers:
        simpleCB: {maxRequests: 1, interval: 0s, timeout: 30s, trip: consecutiveFailures > 5}
    targets:
      apps: {billing: {timeout: general, retry: retryFive, circuitBreaker: simpleCB}}
      components: {statestore: {outbound: {retry: backoff}, inbound: {timeout: general}}}

Defaults are Dapr's: a retry is ``constant`` every ``5s`` (``duration``), an ``exponential``
one starts at 500 ms and grows x1.5 (randomised +-50 %) up to ``maxInterval`` (60s);
``maxRetries`` -1 (unlimited). A breaker lets ``maxRequests`` (1) trial calls through when
half-open, clears its counts every ``interval`` (0s: never) while closed, stays open for
``timeout`` (60s), and trips on ``consecutiveFailures > 5``. Of Dapr's CEL ``trip``
expressions, ``consecutiveFailures > N`` and ``consecutiveFailures >= N`` are served.

Every problem is a :class:`ConfigError` of one line naming the key (``where``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layotto.server.components.base import ConfigError

#: Go's time.ParseDuration units, in seconds
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Go's longest duration (2562047h47m16.854775807s): time.ParseDuration refuses any longer one
MAX_DURATION_SECONDS = 9223372036.854775807
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_TRIP = re.compile(r"\s*consecutiveFailures\s*(>=|>)\s*(\d+)\s*")
RETRY_KEYS = ("policy", "duration", "maxInterval", "maxRetries", "matching")
BREAKER_KEYS = ("maxRequests", "interval", "timeout", "trip")
TARGET_KEYS = ("timeout", "retry", "circuitBreaker")
HTTP_CODES, GRPC_CODES = (100, 599), (0, 16)


def parse_duration(raw: Any, where: str) -> float:
    """Seconds of a Go duration ("5s", "100ms", "1h30m", "0"); ConfigError for anything else,
    a negative one included."""
    text = raw if isinstance(raw, str) else None
    if text is not None and text.strip() == "0":
        return 0.0
    if text is None or not text or text.startswith("-") or _DURATION_PART.sub("", text.lstrip("+")) != "":
        raise ConfigError(f"{where}: expected a duration such as 5s, 100ms or 1m30s (not negative), got {raw!r}")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(text))
    if seconds > MAX_DURATION_SECONDS:  # accepted, 1e400h was inf: every call timed out at once
        raise ConfigError(f"{where}: {text!r} is longer than Go's longest duration, 2562047h47m16.854775807s")
    return seconds


def _integer(raw: Any, where: str, low: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        raise ConfigError(f"{where}: expected an integer of at least {low}, got {raw!r}")
    return raw


def _mapping(raw: Any, where: str, shape: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping ({shape})")
    return {str(key): value for key, value in raw.items()}


def _known(raw: dict[str, Any], where: str, known: tuple[str, ...]) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(known)})")


@dataclass(frozen=True)
class RetrySpec:
    """A named retry policy: ``max_retries`` -1 is unlimited; ``http_codes`` / ``grpc_codes``
    (Dapr's ``matching``) are the app answers retried, ``()`` meaning all of them."""

    name: str
    policy: str = "constant"
    duration: float = 5.0  # seconds between attempts (constant)
    max_interval: float = 60.0  # the longest wait (exponential)
    max_retries: int = -1
    http_codes: tuple[tuple[int, int], ...] = ()
    grpc_codes: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class BreakerSpec:
    """A named circuit breaker: open once ``consecutiveFailures`` is over ``trip_above``."""

    name: str
    max_requests: int = 1
    interval: float = 0.0  # seconds; 0: counts are never cleared while closed
    timeout: float = 60.0  # seconds open before half-open
    trip_above: int = 5  # trips when consecutive failures > this
    trip: str = "consecutiveFailures > 5"


@dataclass(frozen=True)
class TargetSpec:
    """The policies of one target (an app, or one direction of a component)."""

    timeout: float | None = None
    timeout_name: str = ""
    retry: RetrySpec | None = None
    breaker: BreakerSpec | None = None


@dataclass(frozen=True)
class ResiliencySpec:
    """The targets of one runtime, their policies resolved: app id -> policies; component name ->
    (outbound, inbound)."""

    apps: Mapping[str, TargetSpec] = field(default_factory=dict)
    outbound: Mapping[str, TargetSpec] = field(default_factory=dict)
    inbound: Mapping[str, TargetSpec] = field(default_factory=dict)

    def merged(self, other: ResiliencySpec, where: str) -> ResiliencySpec:
        """Both specs' targets; a target given by both is a ConfigError naming ``where``."""
        for kind, mine, theirs in (
            ("apps", self.apps, other.apps),
            ("components (outbound)", self.outbound, other.outbound),
            ("components (inbound)", self.inbound, other.inbound),
        ):
            twice = sorted(set(mine) & set(theirs))
            if twice:
                raise ConfigError(
                    f"{where}: targets.{kind.split()[0]}.{twice[0]}: has policies in two resiliency specs"
                )
        return ResiliencySpec(
            {**self.apps, **other.apps}, {**self.outbound, **other.outbound}, {**self.inbound, **other.inbound}
        )


def _seconds(value: float) -> str:
    """A duration as Go writes the simplest form of it: "5s", "0.2s"."""
    return f"{value:g}s"


def _retry_dict(retry: RetrySpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "policy": retry.policy,
        "duration": _seconds(retry.duration),
        "maxInterval": _seconds(retry.max_interval),
        "maxRetries": retry.max_retries,
    }
    matching = {
        key: ",".join(f"{low}" if low == high else f"{low}-{high}" for low, high in ranges)
        for key, ranges in (("httpStatusCodes", retry.http_codes), ("gRPCStatusCodes", retry.grpc_codes))
        if ranges
    }
    if matching:
        out["matching"] = matching
    return out


def _breaker_dict(breaker: BreakerSpec) -> dict[str, Any]:
    return {
        "maxRequests": breaker.max_requests,
        "interval": _seconds(breaker.interval),
        "timeout": _seconds(breaker.timeout),
        "trip": breaker.trip,
    }


def spec_to_dict(spec: ResiliencySpec) -> dict[str, Any]:
    """The spec in Dapr's shape ({policies, targets}), as ``--print-config`` shows it: each
    target's policies under their names (a name two specs gave different policies is suffixed)."""
    policies: dict[str, dict[str, Any]] = {"timeouts": {}, "retries": {}, "circuitBreakers": {}}

    def named(kind: str, name: str, value: Any) -> str:
        taken, unique, n = policies[kind], name, 1
        while unique in taken and taken[unique] != value:
            n += 1
            unique = f"{name}#{n}"
        taken[unique] = value
        return unique

    def target(policy: TargetSpec) -> dict[str, str]:
        out = {}
        if policy.timeout is not None:
            out["timeout"] = named("timeouts", policy.timeout_name, _seconds(policy.timeout))
        if policy.retry is not None:
            out["retry"] = named("retries", policy.retry.name, _retry_dict(policy.retry))
        if policy.breaker is not None:
            out["circuitBreaker"] = named("circuitBreakers", policy.breaker.name, _breaker_dict(policy.breaker))
        return out

    components: dict[str, dict[str, Any]] = {}
    for direction, targets in (("outbound", spec.outbound), ("inbound", spec.inbound)):
        for name, policy in targets.items():
            components.setdefault(name, {})[direction] = target(policy)
    apps = {app_id: target(policy) for app_id, policy in spec.apps.items()}
    return {
        "policies": {kind: value for kind, value in policies.items() if value},
        "targets": {"apps": apps, "components": components},
    }


def _codes(raw: Any, where: str, bounds: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Dapr's status code list, "429,500-599", as (low, high) ranges."""
    if raw is None or raw == "":
        return ()
    ranges = []
    for part in str(raw).split(","):
        if not part.strip():
            continue
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ConfigError(f"{where}: expected codes or ranges such as 429,500-599, got {raw!r}")
        first, last = int(low), int(high or low)
        if not bounds[0] <= first <= last <= bounds[1]:
            raise ConfigError(f"{where}: {part.strip()!r} is not a range within {bounds[0]}-{bounds[1]}")
        ranges.append((first, last))
    return tuple(ranges)


def parse_retry(name: str, raw: Any, where: str) -> RetrySpec:
    body = _mapping(raw, where, ", ".join(RETRY_KEYS))
    _known(body, where, RETRY_KEYS)
    policy = body.get("policy", "constant")
    if policy not in ("constant", "exponential"):
        raise ConfigError(f"{where}.policy: expected constant or exponential, got {policy!r}")
    matching = _mapping(body.get("matching"), f"{where}.matching", "httpStatusCodes, gRPCStatusCodes")
    _known(matching, f"{where}.matching", ("httpStatusCodes", "gRPCStatusCodes"))
    return RetrySpec(
        name,
        policy,
        parse_duration(body.get("duration", "5s"), f"{where}.duration"),
        parse_duration(body.get("maxInterval", "60s"), f"{where}.maxInterval"),
        _integer(body.get("maxRetries", -1), f"{where}.maxRetries", -1),
        _codes(matching.get("httpStatusCodes"), f"{where}.matching.httpStatusCodes", HTTP_CODES),
        _codes(matching.get("gRPCStatusCodes"), f"{where}.matching.gRPCStatusCodes", GRPC_CODES),
    )


def parse_breaker(name: str, raw: Any, where: str) -> BreakerSpec:
    body = _mapping(raw, where, ", ".join(BREAKER_KEYS))
    _known(body, where, BREAKER_KEYS)
    trip = body.get("trip", "consecutiveFailures > 5")
    match = _TRIP.fullmatch(trip) if isinstance(trip, str) else None
    if match is None:
        raise ConfigError(
            f"{where}.trip: only 'consecutiveFailures > N' and 'consecutiveFailures >= N' are served, got {trip!r}"
        )
    threshold = int(match.group(2))
    trip_above = threshold if match.group(1) == ">" else threshold - 1
    if trip_above < 0:
        raise ConfigError(f"{where}.trip: {trip!r} would trip before any failure")
    return BreakerSpec(
        name,
        max(1, _integer(body.get("maxRequests", 1), f"{where}.maxRequests", 0)),  # 0 means 1, as in Dapr
        parse_duration(body.get("interval", "0s"), f"{where}.interval"),
        parse_duration(body.get("timeout", "60s"), f"{where}.timeout") or 60.0,  # 0 means the default
        trip_above,
        trip.strip(),
    )


@dataclass(frozen=True)
class _Policies:
    timeouts: dict[str, float]
    retries: dict[str, RetrySpec]
    breakers: dict[str, BreakerSpec]

    def target(self, raw: Any, where: str) -> TargetSpec:
        body = _mapping(raw, where, ", ".join(TARGET_KEYS))
        _known(body, where, TARGET_KEYS)
        found: list[Any] = []
        for key, named in (("timeout", self.timeouts), ("retry", self.retries), ("circuitBreaker", self.breakers)):
            name = body.get(key)
            if name is not None and name not in named:
                kind = {"timeout": "timeouts", "retry": "retries", "circuitBreaker": "circuitBreakers"}[key]
                choices = ", ".join(sorted(named)) or "none"
                raise ConfigError(f"{where}.{key}: no policy {name!r} in policies.{kind} (defined: {choices})")
            found.append(None if name is None else named[name])
        timeout, retry, breaker = found
        return TargetSpec(timeout or None, str(body.get("timeout") or ""), retry, breaker)


def _policies(raw: Any, where: str) -> _Policies:
    body = _mapping(raw, where, "timeouts, retries, circuitBreakers")
    _known(body, where, ("timeouts", "retries", "circuitBreakers"))
    timeouts = {
        name: parse_duration(value, f"{where}.timeouts.{name}")
        for name, value in _mapping(body.get("timeouts"), f"{where}.timeouts", "name: duration").items()
    }
    retries = {
        name: parse_retry(name, value, f"{where}.retries.{name}")
        for name, value in _mapping(body.get("retries"), f"{where}.retries", "name: retry policy").items()
    }
    breakers = {
        name: parse_breaker(name, value, f"{where}.circuitBreakers.{name}")
        for name, value in _mapping(body.get("circuitBreakers"), f"{where}.circuitBreakers", "name: breaker").items()
    }
    return _Policies(timeouts, retries, breakers)


def parse_resiliency(raw: Any, where: str) -> ResiliencySpec:
    """A Resiliency ``spec`` ({policies, targets}) with its targets' policies resolved by name."""
    body = _mapping(raw, where, "policies, targets")
    _known(body, where, ("policies", "targets"))
    policies = _policies(body.get("policies"), f"{where}.policies")
    targets = _mapping(body.get("targets"), f"{where}.targets", "apps, components, actors")
    _known(targets, f"{where}.targets", ("apps", "components", "actors"))
    if targets.get("actors"):
        raise ConfigError(f"{where}.targets.actors: this runtime serves no actors")
    apps = {
        app_id: policies.target(value, f"{where}.targets.apps.{app_id}")
        for app_id, value in _mapping(targets.get("apps"), f"{where}.targets.apps", "app id: policies").items()
    }
    outbound, inbound = {}, {}
    components = _mapping(targets.get("components"), f"{where}.targets.components", "name: {outbound, inbound}")
    for name, value in components.items():
        at = f"{where}.targets.components.{name}"
        directions = _mapping(value, at, "outbound, inbound")
        _known(directions, at, ("outbound", "inbound"))
        if "outbound" in directions:
            outbound[name] = policies.target(directions["outbound"], f"{at}.outbound")
        if "inbound" in directions:
            inbound[name] = policies.target(directions["inbound"], f"{at}.inbound")
    return ResiliencySpec(apps, outbound, inbound)
