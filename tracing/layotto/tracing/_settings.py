"""What tracing does: from a config mapping, then from the standard environment variables.

Tracing is off unless an exporter is named. Environment variables (read after the
config, so they win):

* ``OTEL_SDK_DISABLED=true`` turns everything off.
* ``OTEL_TRACES_EXPORTER`` (comma separated: ``otlp``, ``skywalking``, ``none``).
* ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``: the OTLP/gRPC
  collector; setting it turns the OTLP exporter on.
* ``SW_AGENT_COLLECTOR_BACKEND_SERVICES``: the SkyWalking OAP's gRPC address; setting it turns
  the SkyWalking exporter on.
* ``OTEL_SERVICE_NAME`` or ``SW_AGENT_NAME``; ``SW_AGENT_INSTANCE_NAME``.
* ``OTEL_TRACES_SAMPLER_ARG``: the sampling ratio (0..1) when the sampler is a ratio one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

EXPORTERS = ("otlp", "skywalking")
DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:4317"
DEFAULT_SKYWALKING_ADDRESS = "127.0.0.1:11800"


class TracingConfigError(ValueError):
    """A tracing setting that makes no sense; the message names the key."""


@dataclass(frozen=True)
class TracingSettings:
    exporters: tuple[str, ...] = ()
    service_name: str = "layotto"
    service_instance: str = ""
    sampling_ratio: float = 1.0
    otlp_endpoint: str = DEFAULT_OTLP_ENDPOINT
    skywalking_address: str = DEFAULT_SKYWALKING_ADDRESS

    @property
    def enabled(self) -> bool:
        return bool(self.exporters)

    @property
    def instance(self) -> str:
        return self.service_instance or f"{socket.gethostname()}-{os.getpid()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "exporters": list(self.exporters),
            "service_name": self.service_name,
            "service_instance": self.service_instance,
            "sampling_ratio": self.sampling_ratio,
            "otlp_endpoint": self.otlp_endpoint,
            "skywalking_address": self.skywalking_address,
        }


def _exporters(value: Any, key: str) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else list(value or [])
    out = tuple(str(n).strip().lower() for n in names if str(n).strip() and str(n).strip().lower() != "none")
    for name in out:
        if name not in EXPORTERS:
            raise TracingConfigError(f"{key}: unknown exporter {name!r} (known: {', '.join(EXPORTERS)})")
    return out


def _ratio(value: Any, key: str) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise TracingConfigError(f"{key}: expected a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise TracingConfigError(f"{key}: expected a number between 0 and 1, got {ratio}")
    return ratio


def from_mapping(raw: Mapping[str, Any], where: str = "tracing") -> TracingSettings:
    known = set(TracingSettings.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TracingConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {k: str(v) for k, v in raw.items() if k not in ("exporters", "sampling_ratio")}
    if "exporters" in raw:
        values["exporters"] = _exporters(raw["exporters"], f"{where}.exporters")
    if "sampling_ratio" in raw:
        values["sampling_ratio"] = _ratio(raw["sampling_ratio"], f"{where}.sampling_ratio")
    return TracingSettings(**values)


def with_environment(settings: TracingSettings, environ: Mapping[str, str] | None = None) -> TracingSettings:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return replace(settings, exporters=())
    exporters = list(settings.exporters)
    if "OTEL_TRACES_EXPORTER" in env:
        exporters = list(_exporters(env["OTEL_TRACES_EXPORTER"], "OTEL_TRACES_EXPORTER"))
    changes: dict[str, Any] = {}
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        changes["otlp_endpoint"] = endpoint
        exporters.append("otlp")
    if env.get("SW_AGENT_COLLECTOR_BACKEND_SERVICES"):
        changes["skywalking_address"] = env["SW_AGENT_COLLECTOR_BACKEND_SERVICES"].split(",")[0].strip()
        exporters.append("skywalking")
    name = env.get("OTEL_SERVICE_NAME") or env.get("SW_AGENT_NAME")
    if name:
        changes["service_name"] = name
    if env.get("SW_AGENT_INSTANCE_NAME"):
        changes["service_instance"] = env["SW_AGENT_INSTANCE_NAME"]
    if "ratio" in env.get("OTEL_TRACES_SAMPLER", "traceidratio") and "OTEL_TRACES_SAMPLER_ARG" in env:
        changes["sampling_ratio"] = _ratio(env["OTEL_TRACES_SAMPLER_ARG"], "OTEL_TRACES_SAMPLER_ARG")
    return replace(settings, exporters=tuple(dict.fromkeys(exporters)), **changes)
