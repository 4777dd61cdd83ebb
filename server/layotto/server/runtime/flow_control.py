"""Flow control: token-bucket rate limits per gRPC method and per invoked app id (after
Layotto's ``flowControlFilter``).

Config (``flow_control:``), Layotto's rule keys::

    flow_control:
      global_switch: true          # false: the rules are kept but nothing is limited
      rules:
        - resource: /spec.proto.runtime.v1.Runtime/SayHello   # a gRPC method of this runtime
          threshold: 5             # calls per interval, and the burst (the bucket's size)
          statIntervalInMs: 1000   # the interval (default 1000)
        - appId: billing           # service invocation of app "billing" through this runtime
          threshold: 100

Each rule is one bucket of ``threshold`` tokens refilled at ``threshold`` per interval; a call
takes one token, and a call that finds none is refused with :class:`RateLimited` telling how
long until the next token (``retry_after_seconds``). ``grantType`` may only be Layotto's 1
(QPS); one rule per method or app id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from layotto.server.components.base import ConfigError, config_entries
from layotto.server.errors import RateLimited

RULE_KEYS = ("resource", "appId", "threshold", "statIntervalInMs", "grantType")
QPS_GRANT_TYPE = 1  # Layotto's (Sentinel's) grantType of a QPS rule, the only kind


class TokenBucket:
    """``capacity`` tokens, refilled at ``per_second``; :meth:`take` one or learn the wait."""

    def __init__(self, capacity: int, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(capacity)
        self._per_second = per_second
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()

    def take(self) -> float:
        """0.0 when a token was taken; else the seconds until one is there (none taken)."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._per_second


@dataclass(frozen=True)
class Rule:
    threshold: int
    interval_ms: int = 1000

    def bucket(self) -> TokenBucket:
        return TokenBucket(self.threshold, self.threshold * 1000 / self.interval_ms)


@dataclass
class FlowControl:
    """The rules of one runtime, each with its bucket."""

    methods: Mapping[str, Rule] = field(default_factory=dict)
    apps: Mapping[str, Rule] = field(default_factory=dict)
    enabled: bool = True
    _buckets: dict[str, TokenBucket] = field(default_factory=dict, repr=False)

    def _admit(self, key: str, rule: Rule | None, what: str) -> None:
        if rule is None or not self.enabled:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = rule.bucket()
        wait = bucket.take()
        if wait:
            raise RateLimited(what, rule.threshold, rule.interval_ms, wait)

    def to_dict(self) -> dict[str, Any]:
        """The config's shape (``global_switch``, ``rules``), as ``--print-config`` shows it."""
        rules = [
            {key: name, "threshold": rule.threshold, "statIntervalInMs": rule.interval_ms}
            for key, named in (("resource", self.methods), ("appId", self.apps))
            for name, rule in named.items()
        ]
        return {"global_switch": self.enabled, "rules": rules}

    def limits_method(self, method: str) -> bool:
        return self.enabled and method in self.methods

    def admit_method(self, method: str) -> None:
        """Raise RateLimited when gRPC ``method`` (``/package.Service/Method``) is over its rate."""
        self._admit("method:" + method, self.methods.get(method), method)

    def admit_app(self, app_id: str) -> None:
        """Raise RateLimited when invocations of ``app_id`` are over their rate."""
        self._admit("app:" + app_id, self.apps.get(app_id), f"invocations of app {app_id!r}")


def _positive_int(raw: Any, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ConfigError(f"{where}: expected a positive integer, got {raw!r}")
    return raw


def _add_once(rules: dict[str, Rule], key: str, rule: Rule, where: str) -> None:
    """One rule per method or app id: a second one silently replaced the first."""
    if key in rules:
        raise ConfigError(f"{where}: {key!r} has a rule already")
    rules[key] = rule


def parse_flow_control(raw: Any, where: str) -> FlowControl:
    """``{global_switch, rules}`` as :class:`FlowControl`; ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (global_switch, rules)")
    unknown = sorted(set(raw) - {"global_switch", "rules", "limit_key_type"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: global_switch, rules, limit_key_type)")
    switch = raw.get("global_switch", True)
    if not isinstance(switch, bool):
        raise ConfigError(f"{where}.global_switch: expected true or false, got {switch!r}")
    methods: dict[str, Rule] = {}
    apps: dict[str, Rule] = {}
    for at, item in config_entries(raw.get("rules") or [], f"{where}.rules", RULE_KEYS):
        rule = Rule(
            _positive_int(item.get("threshold"), f"{at}.threshold"),
            _positive_int(item.get("statIntervalInMs", 1000), f"{at}.statIntervalInMs"),
        )
        grant_type = item.get("grantType", QPS_GRANT_TYPE)
        if grant_type != QPS_GRANT_TYPE or isinstance(grant_type, bool):  # Sentinel's 0 counts threads: not served
            raise ConfigError(f"{at}.grantType: only 1 (QPS) is served, got {grant_type!r}")
        resource, app_id = item.get("resource"), item.get("appId")
        if (resource is None) == (app_id is None):
            raise ConfigError(f"{at}: expected one of resource (a gRPC method) or appId (an invoked app)")
        if resource is not None:
            if not isinstance(resource, str) or not resource.startswith("/") or resource.count("/") != 2:
                raise ConfigError(f"{at}.resource: expected a gRPC method /package.Service/Method, got {resource!r}")
            _add_once(methods, resource, rule, f"{at}.resource")
        elif not isinstance(app_id, str) or not app_id:
            raise ConfigError(f"{at}.appId: expected an app id, got {app_id!r}")
        else:
            _add_once(apps, app_id, rule, f"{at}.appId")
    return FlowControl(methods, apps, switch)
