"""Which apps may invoke which methods of this runtime's app (Dapr's app access control).

The shape is Dapr's ``spec.accessControl`` of a Configuration: ``defaultAction`` (allow or deny;
allow when absent) for callers without a policy, ``trustDomain`` (accepted, ignored: there are no
SPIFFE identities here), and ``policies``: per calling ``appId`` a ``defaultAction`` and
``operations`` ``[{name: /path/*, httpVerb: [GET, POST] or ["*"], action: allow|deny}]``.

An operation's ``name`` is matched against the method as the path an HTTP app is sent
(:func:`operation_path`: ``x/../admin?y`` is ``/admin``): ``*`` stands for one
path segment, ``**`` for any number of them; when several match, the most specific wins (the
longest name without its wildcards: ``/orders/7`` over ``/orders/*``). Its
``httpVerb`` list is checked for HTTP verbs only: a gRPC call (verb NONE) matches any list. A call
no operation matches takes its policy's ``defaultAction``.

The caller is the app id a hop carries (``layotto-caller-app-id``), checked only on hops that come
from a trusted sidecar (see :class:`~layotto.server.runtime.invocation.Invoker`'s hop token).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from layotto.server.components.base import ConfigError, config_entries

ACTIONS = ("allow", "deny")


@dataclass(frozen=True)
class Operation:
    name: str
    verbs: frozenset[str]  # upper-case; "*" is any
    allow: bool

    def matches(self, path: str, verb: str) -> bool:
        if not _pattern(self.name).fullmatch(path):
            return False
        return verb == "NONE" or "*" in self.verbs or verb in self.verbs


#: the verbs a call can have (HTTPExtension.Verb's, but NONE: a gRPC call, which any list matches)
HTTP_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


@dataclass(frozen=True)
class AppPolicy:
    app_id: str
    default_allow: bool
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class AccessControl:
    """The policies of one runtime; :meth:`allows` decides a call."""

    default_allow: bool = True
    policies: Mapping[str, AppPolicy] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Dapr's ``accessControl`` shape, as ``--print-config`` shows it."""
        return {
            "defaultAction": _action_name(self.default_allow),
            "policies": [
                {
                    "appId": policy.app_id,
                    "defaultAction": _action_name(policy.default_allow),
                    "operations": [
                        {"name": op.name, "httpVerb": sorted(op.verbs), "action": _action_name(op.allow)}
                        for op in policy.operations
                    ],
                }
                for policy in (self.policies or {}).values()
            ],
        }

    def allows(self, caller_app_id: str, method: str, verb: str) -> bool:
        """Whether app ``caller_app_id`` may call ``method`` (a path, with or without its leading
        ``/``) with ``verb`` (an HTTP verb, or NONE for a gRPC call)."""
        policy = (self.policies or {}).get(caller_app_id)
        if policy is None:
            return self.default_allow
        path = operation_path(method)
        matching = [op for op in policy.operations if op.matches(path, verb)]
        if not matching:
            return policy.default_allow
        return max(matching, key=lambda op: len(op.name.replace("*", ""))).allow


def operation_path(method: str) -> str:
    """The path an HTTP app is sent for ``method``, as the app channel's URL makes it: dot segments
    removed, percent-decoded, without a query or fragment (``x/../admin?y`` is ``/admin``). Dapr
    normalizes an operation so too before matching it, so no spelling of a method passes as another."""
    try:
        return URL("http://app/" + method.lstrip("/")).path
    except ValueError:  # no URL at all: the app channel refuses it too
        return "/" + method.lstrip("/")


def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*|\*)", name)
    regex = "".join({"**": ".*", "*": "[^/]*"}.get(part, re.escape(part)) for part in parts)
    return re.compile(regex)


def _action_name(allow: bool) -> str:
    return "allow" if allow else "deny"


def _action(raw: Any, where: str) -> bool:
    action = str(raw if raw is not None else "allow").lower()
    if action not in ACTIONS:
        raise ConfigError(f"{where}: expected allow or deny, got {raw!r}")
    return action == "allow"


def _operations(raw: Any, where: str) -> tuple[Operation, ...]:
    operations = []
    for at, item in config_entries(raw or [], where, ("name", "httpVerb", "action")):
        name = item.get("name")
        if not isinstance(name, str) or not name.startswith("/"):
            raise ConfigError(f"{at}.name: expected a path starting with '/', got {name!r}")
        verbs = item.get("httpVerb", ["*"])
        if not isinstance(verbs, list) or not verbs or not all(isinstance(v, str) and v for v in verbs):
            raise ConfigError(f"{at}.httpVerb: expected a list of HTTP verbs or ['*']")
        unknown = [v for v in verbs if v.upper() not in (*HTTP_VERBS, "*")]
        if unknown:  # a verb no call has: a deny rule with a typo (DELTE) would deny nothing
            raise ConfigError(f"{at}.httpVerb: unknown verb {unknown[0]!r} (known: {', '.join(HTTP_VERBS)}, or '*')")
        operations.append(
            Operation(name, frozenset(v.upper() for v in verbs), _action(item.get("action"), f"{at}.action"))
        )
    return tuple(operations)


def parse_access_control(raw: Any, where: str) -> AccessControl:
    """Dapr's ``accessControl`` mapping as :class:`AccessControl`; ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (defaultAction, trustDomain, policies)")
    unknown = set(raw) - {"defaultAction", "trustDomain", "policies"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key (known: defaultAction, trustDomain, policies)")
    policies: dict[str, AppPolicy] = {}
    keys = ("appId", "defaultAction", "trustDomain", "namespace", "operations")
    for at, item in config_entries(raw.get("policies") or [], f"{where}.policies", keys):
        app_id = item.get("appId")
        if not isinstance(app_id, str) or not app_id:
            raise ConfigError(f"{at}.appId: required, the calling app's id")
        if app_id in policies:
            raise ConfigError(f"{at}.appId: {app_id!r} has a policy already")
        default = _action(item.get("defaultAction"), f"{at}.defaultAction")
        policies[app_id] = AppPolicy(app_id, default, _operations(item.get("operations"), f"{at}.operations"))
    return AccessControl(_action(raw.get("defaultAction"), f"{where}.defaultAction"), policies)
