"""Which RPCs of the API the cases cover, enumerated from the descriptors."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

from google.protobuf import descriptor as _d

import layotto.proto
from layotto.conformance.model import Case, CaseResult, Outcome

#: services implemented by applications, out-of-process components or trace collectors, not by a runtime
NOT_SERVED_BY_RUNTIMES = frozenset(
    {
        "skywalking.v3.TraceSegmentReportService",
        "spec.proto.runtime.v1.AppCallback",
        "dapr.proto.runtime.v1.AppCallback",
        "dapr.proto.runtime.v1.AppCallbackAlpha",
        "dapr.proto.runtime.v1.AppCallbackHealthCheck",
        "spec.proto.pluggable.v1.hello.Hello",
    }
)


#: Dapr's pluggable component protocol (dapr.proto.components.v1): served by components, not runtimes
PLUGGABLE_PACKAGE = "layotto.proto.components."


def runtime_services() -> list[_d.ServiceDescriptor]:
    services: dict[str, _d.ServiceDescriptor] = {}
    for info in pkgutil.walk_packages(layotto.proto.__path__, "layotto.proto."):
        if info.name.endswith("_pb2") and not info.name.startswith(PLUGGABLE_PACKAGE):
            module = importlib.import_module(info.name)
            for service in module.DESCRIPTOR.services_by_name.values():
                if service.full_name not in NOT_SERVED_BY_RUNTIMES:
                    services[service.full_name] = service
    return [services[name] for name in sorted(services)]


def rpc_coverage(cases: Sequence[Case], results: Sequence[CaseResult]) -> dict[str, list[str]]:
    """Every runtime RPC -> the ids of cases that exercised it in this run (empty: uncovered)."""
    ran = {r.case for r in results if r.outcome is not Outcome.SKIP}
    coverage: dict[str, list[str]] = {}
    for service in runtime_services():
        for method in service.methods:
            coverage[f"{service.full_name}/{method.name}"] = []
    for case in cases:
        if case.id in ran:
            for rpc in case.rpcs:
                if rpc in coverage and case.id not in coverage[rpc]:
                    coverage[rpc].append(case.id)
    return coverage
