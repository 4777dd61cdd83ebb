"""Name resolution through DNS: the records Kubernetes Services (or any DNS server) publish.

An app id becomes a DNS name: ``nameFormat`` with ``{appid}`` replaced, then ``.`` and
``domain`` (``b`` -> ``b.default.svc.cluster.local``). Two kinds of records are read:

* ``recordType: SRV`` (the default): ``<srvPrefix>.<name>``, e.g.
  ``_layotto._tcp.b.default.svc.cluster.local``: each record gives a host and the port of a
  sidecar's gRPC API; the hosts are resolved through A/AAAA (from the answer's additional
  section when the server sends them there). A headless Kubernetes Service with a port named
  ``layotto`` publishes exactly this, one record per ready pod. Only the records of the lowest
  priority are used; weights are not (calls go round-robin, as for every resolver).
* ``recordType: A``: ``<name>``'s A and AAAA records, each with the fixed ``port`` (every
  sidecar serving on the same port, as in Dapr's Kubernetes resolver, which calls
  ``<appid>-dapr.<namespace>.svc.cluster.local:50002``: ``nameFormat: "{appid}-dapr"``).

Answers with addresses are cached per app id (at most MAX_CACHED app ids) until their smallest
TTL passes (a TTL of 0: asked every call); concurrent calls for one app id share one lookup. A
name that does not exist or has no records resolves to no address (the call fails with
APP_NOT_FOUND) and is asked again next time; a DNS server that does not answer, or answers with
an error, raises BackendUnavailable naming it. Needs dnspython (the
``dns`` extra of layotto-server), imported only when this resolver is configured.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from layotto.server.components.base import ConfigError, MetadataField
from layotto.server.components.nameresolution import NameResolver, parse_metadata
from layotto.server.errors import BackendUnavailable

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.message
    import dns.name
    import dns.rrset

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'layotto-server[dns]'"
MAX_CACHED = 4096  # app ids whose answers are cached
METADATA = (
    MetadataField(
        "server",
        "DNS server to ask, IP or IP:PORT (port 53 when not given); default: the system's (/etc/resolv.conf).",
        default="",
        example="127.0.0.1:5353",
    ),
    MetadataField("domain", "Suffix of every name (without a leading dot); empty: none.", default=""),
    MetadataField(
        "nameFormat", "The name of an app id's records before the domain; {appid} is replaced.", default="{appid}"
    ),
    MetadataField(
        "recordType", "SRV (host and port from SRV records) or A (A/AAAA records and `port`).", default="SRV"
    ),
    MetadataField(
        "srvPrefix", "Service and protocol labels before the name (recordType SRV).", default="_layotto._tcp"
    ),
    MetadataField("port", "Port of the sidecars' gRPC API (recordType A).", int, 34904, minimum=1, maximum=65535),
    MetadataField("timeoutInSeconds", "How long one lookup may take.", float, 2.0, minimum=0.05, maximum=60),
)


def _server(raw: str) -> tuple[str, int] | None:
    """``IP[:PORT]`` (``[IPv6]:PORT``) as (ip, port); None for the system's servers."""
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or "]" in port or (host.count(":") and not host.startswith("[")):  # no port (IPv6 too)
        host, port = raw, "53"
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = ""
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ConfigError(f"name_resolution.metadata.server: expected IP or IP:PORT, got {raw!r}")
    return host, int(port)


def _import_dnspython() -> Any:
    try:
        import dns.asyncresolver
    except ImportError:
        raise ConfigError(f"name_resolution.type dns needs dnspython: {INSTALL_HINT}") from None
    return dns


class _NoAnswer(Exception):
    """The DNS server did not answer, or answered with an error (SERVFAIL, REFUSED, ...)."""


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class DnsResolver(NameResolver):
    """App id -> sidecar addresses from SRV or A/AAAA records; see the module's doc."""

    def __init__(self, metadata: Mapping[str, str]) -> None:
        """Raises ConfigError for bad metadata, or when dnspython is not installed."""
        settings = parse_metadata(METADATA, metadata)
        self._dns = _import_dnspython()
        self._record_type = str(settings["recordType"]).upper()
        if self._record_type not in ("SRV", "A"):
            raise ConfigError(f"name_resolution.metadata.recordType: expected SRV or A, got {settings['recordType']!r}")
        self._format = str(settings["nameFormat"])
        if "{appid}" not in self._format:
            raise ConfigError(f"name_resolution.metadata.nameFormat: must contain {{appid}}, got {self._format!r}")
        self._domain = str(settings["domain"]).strip(".")
        self._prefix = str(settings["srvPrefix"]).strip(".")
        self._port = int(settings["port"])
        self._timeout = float(settings["timeoutInSeconds"])
        self._resolver = self._make_resolver(_server(str(settings["server"])))
        #: app id -> (expires at, addresses), oldest first; answers with addresses and a TTL only
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._pending: dict[str, asyncio.Future[tuple[str, ...]]] = {}

    def _make_resolver(self, server: tuple[str, int] | None) -> dns.asyncresolver.Resolver:
        try:
            resolver: dns.asyncresolver.Resolver = self._dns.asyncresolver.Resolver(configure=server is None)
        except self._dns.exception.DNSException as error:  # no /etc/resolv.conf, or no server in it
            raise ConfigError(f"name_resolution.metadata.server: not set, and the system has none: {error}") from None
        if server is not None:
            resolver.nameservers = [server[0]]
            resolver.port = server[1]
        resolver.lifetime = resolver.timeout = self._timeout
        #: the DNS server(s) asked, as error messages name them
        self.server = _join(*server) if server else ",".join(str(ns) for ns in resolver.nameservers)
        return resolver

    def name_of(self, app_id: str) -> str:
        """The DNS name queried for ``app_id`` (absolute, with the trailing dot)."""
        name = self._format.replace("{appid}", app_id)
        if self._record_type == "SRV":
            name = f"{self._prefix}.{name}" if self._prefix else name
        return f"{name}.{self._domain}." if self._domain else f"{name}."

    async def resolve(self, app_id: str) -> Sequence[str]:
        """The HOST:PORT of ``app_id``'s sidecars, from the cache while its TTL lasts.

        Raises BackendUnavailable naming the DNS server when it does not answer."""
        cached = self._cache.get(app_id)
        if cached is not None and asyncio.get_running_loop().time() < cached[0]:
            return cached[1]
        pending = self._pending.get(app_id)
        if pending is None:  # one lookup per app id at a time; the others wait for it
            pending = self._pending[app_id] = asyncio.ensure_future(self._lookup(app_id))
            pending.add_done_callback(lambda done: self._settled(app_id, done))
        return await asyncio.shield(pending)  # a cancelled caller leaves the lookup to the others

    def _settled(self, app_id: str, lookup: asyncio.Future[tuple[str, ...]]) -> None:
        self._pending.pop(app_id, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every waiter may have been cancelled

    async def _lookup(self, app_id: str) -> tuple[str, ...]:
        loop = asyncio.get_running_loop()
        try:
            name = self._dns.name.from_text(self.name_of(app_id))
        except self._dns.exception.DNSException as error:
            log.debug("app id %r is no DNS name: %s", app_id, error)
            return ()
        started = loop.time()
        try:
            if self._record_type == "SRV":
                addresses, ttl = await self._from_srv(name)
            else:
                addresses, ttl = await self._hosts(name, self._port, None)
        except _NoAnswer as error:
            raise BackendUnavailable("dns", f"cannot resolve app id {app_id!r}: {error}") from None
        addresses = tuple(sorted(addresses))  # one order whatever order the server gave
        self._remember(app_id, started + ttl, addresses)
        log.debug("dns: %s -> %s (ttl %d s)", name, addresses, ttl)
        return addresses

    def _remember(self, app_id: str, expires_at: float, addresses: tuple[str, ...]) -> None:
        """Cache an answer with addresses until ``expires_at``; at most MAX_CACHED app ids (the
        expired go first, then the oldest), so app ids a client makes up cannot grow it."""
        self._cache.pop(app_id, None)
        now = asyncio.get_running_loop().time()
        if not addresses or expires_at <= now:
            return
        if len(self._cache) >= MAX_CACHED:
            self._cache = {app: entry for app, entry in self._cache.items() if entry[0] > now}
            while len(self._cache) >= MAX_CACHED:
                del self._cache[next(iter(self._cache))]
        self._cache[app_id] = (expires_at, addresses)

    async def _query(
        self, name: dns.name.Name, rdtype: str
    ) -> tuple[dns.rrset.RRset | None, dns.message.Message | None]:
        """The records of one query and the response they came in; (None, None) for a name
        that does not exist, (None, response) for one without such records."""
        lib = self._dns
        try:
            answer = await self._resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except lib.resolver.NXDOMAIN:
            return None, None
        except (lib.exception.Timeout, lib.resolver.NoNameservers, lib.resolver.YXDOMAIN, OSError) as error:
            raise _NoAnswer(f"no answer from the DNS server {self.server} to {rdtype} {name} ({error})") from None
        return answer.rrset, answer.response

    async def _from_srv(self, name: dns.name.Name) -> tuple[tuple[str, ...], int]:
        """Addresses of the lowest-priority SRV records of ``name``, and the smallest TTL."""
        rrset, response = await self._query(name, "SRV")
        if rrset is None:
            return (), 0  # no SOA is read: "no records" is not cached
        records = [r for r in rrset if str(r.target) != "."]  # "." : the service is not offered
        lowest = min((r.priority for r in records), default=0)
        found = await asyncio.gather(
            *(self._hosts(r.target, r.port, response) for r in records if r.priority == lowest)
        )
        addresses = tuple(address for hosts, _ in found for address in hosts)
        return addresses, min([rrset.ttl, *(ttl for _, ttl in found)])

    async def _hosts(
        self, name: dns.name.Name, port: int, response: dns.message.Message | None
    ) -> tuple[tuple[str, ...], int]:
        """``name``'s A and AAAA addresses joined with ``port``, and their smallest TTL; taken
        from ``response``'s additional section when there (an SRV answer's), else asked."""
        rrsets = await asyncio.gather(*(self._records(name, rdtype, response) for rdtype in ("A", "AAAA")))
        present = [rrset for rrset in rrsets if rrset is not None]
        addresses = tuple(_join(str(record.address), port) for rrset in present for record in rrset)
        return addresses, min((rrset.ttl for rrset in present), default=0)

    async def _records(
        self, name: dns.name.Name, rdtype: str, response: dns.message.Message | None
    ) -> dns.rrset.RRset | None:
        if response is not None:
            for rrset in response.additional:
                if rrset.name == name and rrset.rdtype.name == rdtype:
                    return rrset
        return (await self._query(name, rdtype))[0]
