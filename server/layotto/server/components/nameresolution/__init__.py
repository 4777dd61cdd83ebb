"""Name resolution for service invocation: which sidecars (HOST:PORT of their gRPC API) serve
an app id.

* ``static``: the addresses are listed in the config, per app id;
* ``etcd``: a registry every runtime writes itself into, under a lease it keeps alive; callers
  read the registry once and then follow it with a watch (see :mod:`.etcd`);
* ``dns``: SRV or A/AAAA records of a DNS server, what Kubernetes Services give (see :mod:`.dns`;
  needs the ``dns`` extra, dnspython).

Configured by the runtime config's ``name_resolution`` section::

    name_resolution:
      type: static
      apps:
        checkout: [127.0.0.1:34905, 127.0.0.1:34906]
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from layotto.server.components.base import ConfigError, MetadataField

TYPES = ("static", "etcd", "dns")


@dataclass(frozen=True)
class NameResolutionSettings:
    """``type`` (static, etcd or dns), the component's ``metadata``, the static ``apps``."""

    type: str = "static"
    metadata: Mapping[str, str] = field(default_factory=dict)
    apps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.apps:
            out["apps"] = {app: list(addresses) for app, addresses in self.apps.items()}
        return out


def parse_settings(raw: Any, where: str) -> NameResolutionSettings:
    """The ``name_resolution`` section, or a ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping {{type, metadata, apps}}")
    unknown = sorted(set(raw) - {"type", "metadata", "apps"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: type, metadata, apps)")
    kind = raw.get("type", "static")
    if kind not in TYPES:
        raise ConfigError(f"{where}.type: expected one of {', '.join(TYPES)}, got {kind!r}")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ConfigError(f"{where}.metadata: expected a mapping of strings")
    apps = raw.get("apps") or {}
    if not isinstance(apps, dict):
        raise ConfigError(f"{where}.apps: expected a mapping of app id to a list of HOST:PORT")
    # each key belongs to one kind: the other kind's key would be ignored, so a config missing its
    # `type: etcd` (static is the default) would run with no app known, silently
    if kind == "static" and metadata:
        raise ConfigError(
            f"{where}.metadata: type static takes no metadata (it lists addresses under apps);"
            " a registry or DNS needs type: etcd or dns"
        )
    if kind != "static" and apps:
        raise ConfigError(f"{where}.apps: only type static reads apps (type {kind} finds the addresses itself)")
    parsed = {str(app): _addresses(value, f"{where}.apps.{app}") for app, value in apps.items()}
    return NameResolutionSettings(kind, {str(k): str(v) for k, v in metadata.items()}, parsed)


def _addresses(value: Any, where: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: expected a list of HOST:PORT")
    return tuple(sidecar_address(item, where) for item in items)


#: a host name or IPv4 address as a gRPC target takes it (no scheme, path, space or port of its own)
_HOST = re.compile(r"[A-Za-z0-9_.-]+")


def sidecar_address(item: Any, where: str) -> str:
    """``item`` as a sidecar's HOST:PORT (``[IPv6]:PORT`` too), else a ConfigError naming ``where``.

    The port is 1-65535: gRPC took ``127.0.0.1:99999`` as port 34463 (99999 mod 65536), so a typo
    sent the calls to whatever listened there."""
    text = str(item).strip()
    host, sep, port = text.rpartition(":")
    valid = isinstance(item, str) and bool(sep) and port.isascii() and port.isdigit()
    if valid and host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            valid = False
    elif valid:
        valid = _HOST.fullmatch(host) is not None
    if not valid:
        raise ConfigError(f"{where}: expected HOST:PORT, got {item!r}")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"{where}: expected HOST:PORT, got {item!r} (a port is 1-65535)")
    return text


def parse_metadata(fields: Sequence[MetadataField], raw: Mapping[str, str]) -> dict[str, Any]:
    """``raw`` (the ``name_resolution.metadata``) checked against ``fields``, defaults filled in;
    a ConfigError names an unknown key, a missing required one or a bad value."""
    known = {f.name: f for f in fields}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"name_resolution.metadata.{unknown[0]}: unknown key (known: {', '.join(known)})")
    out: dict[str, Any] = {}
    for name, spec in known.items():
        if name in raw:
            out[name] = spec.parse(raw[name], "name_resolution.metadata")
        elif spec.required:
            raise ConfigError(f"name_resolution.metadata.{name}: required ({spec.description})")
        else:
            out[name] = spec.default
    return out


class NameResolver(ABC):
    """Resolves app ids to sidecar addresses; a registry also announces this runtime."""

    @abstractmethod
    async def resolve(self, app_id: str) -> Sequence[str]:
        """The addresses (HOST:PORT) of the sidecars serving ``app_id``; empty when none is known.

        Raises BackendUnavailable when the resolver's backend (a DNS server) cannot answer."""

    async def start(self, app_id: str, address: str) -> None:
        """Begin serving: a registry announces ``app_id`` at ``address`` (the gRPC API)."""

    async def aclose(self) -> None:
        """Stop: a registry withdraws this runtime's entry."""


def create_resolver(settings: NameResolutionSettings) -> NameResolver:
    """The resolver ``settings`` name; raises ConfigError for bad metadata."""
    if settings.type == "dns":
        from layotto.server.components.nameresolution.dns import DnsResolver

        return DnsResolver(settings.metadata)
    if settings.type == "etcd":
        from layotto.server.components.nameresolution.etcd import EtcdRegistry

        return EtcdRegistry(settings.metadata)
    from layotto.server.components.nameresolution.static import StaticResolver

    return StaticResolver(settings.apps)
