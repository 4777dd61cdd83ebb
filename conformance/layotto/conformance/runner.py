"""Runs the cases against a target runtime and judges the run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from layotto.conformance.model import Case, CaseContext, CaseFailed, CaseResult, Outcome
from layotto.conformance.wire import WIRE_APIS
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, metadata_pb2

CASE_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class Component:
    """A component the suite must exercise."""

    block: str
    name: str
    features: frozenset[str]


#: blocks whose cases check the runtime itself, not a component: they run once per target, on a
#: component named after this (service invocation needs no component)
RUNTIME_BLOCKS = ("invocation",)
RUNTIME_COMPONENT = "runtime"

#: GetMetadata reports secret stores under Dapr's name of the block
BLOCK_OF_DAPR_PREFIX = {"secretstores": "secret_store", "configuration": "config_store"}


async def discover(channel: grpc.aio.Channel, timeout: float = 10.0) -> dict[tuple[str, str], frozenset[str]]:
    """(block, name) -> declared features, from Dapr's GetMetadata; empty if not served."""
    stub = dapr_pb2_grpc.DaprStub(channel)
    try:
        response = await stub.GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=timeout)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            return {}
        raise
    return {
        (BLOCK_OF_DAPR_PREFIX.get(prefix, prefix), c.name): frozenset(c.capabilities)
        for c in response.registered_components
        for prefix in [c.type.split(".", 1)[0]]
    }


async def _run_case(case: Case, ctx: CaseContext) -> tuple[Outcome, str]:
    try:
        await asyncio.wait_for(case.run(ctx), CASE_TIMEOUT_SECONDS)
    except CaseFailed as failure:
        return Outcome.FAIL, str(failure)
    except grpc.aio.AioRpcError as error:
        return Outcome.FAIL, f"unexpected {error.code().name}: {error.details()}"
    except TimeoutError:
        return Outcome.FAIL, f"did not finish within {CASE_TIMEOUT_SECONDS:.0f}s"
    return Outcome.PASS, ""


async def run_suite(
    channel: grpc.aio.Channel,
    components: Sequence[Component],
    cases: Sequence[Case],
    apis: Sequence[str] = ("layotto", "dapr"),
    runtime_config: Path | None = None,
) -> list[CaseResult]:
    results: list[CaseResult] = []
    for api_name in apis:
        api = WIRE_APIS[api_name](channel)
        for component in components:
            for case in (c for c in cases if c.block == component.block and api_name in c.apis):
                reason = case.skip_reason(component.features)
                if reason is not None:
                    results.append(CaseResult(api_name, component.block, component.name, case.id, Outcome.SKIP, reason))
                    continue
                ctx = CaseContext(
                    api=api,
                    channel=channel,
                    component=component.name,
                    features=component.features,
                    runtime_config=runtime_config,
                )
                started = time.monotonic()
                outcome, detail = await _run_case(case, ctx)
                results.append(
                    CaseResult(
                        api_name,
                        component.block,
                        component.name,
                        case.id,
                        outcome,
                        detail,
                        round(time.monotonic() - started, 3),
                    )
                )
    return results


def missing_runs(
    results: Sequence[CaseResult], components: Sequence[Component], cases: Sequence[Case], apis: Sequence[str]
) -> list[str]:
    """Every (api, component, case) that should have a result and has none."""
    seen = {(r.api, r.block, r.component, r.case) for r in results}
    missing = []
    for api in apis:
        for component in components:
            for case in cases:
                applicable = case.block == component.block and api in case.apis
                if applicable and (api, component.block, component.name, case.id) not in seen:
                    missing.append(f"{api}:{component.block}/{component.name}:{case.id}")
    return missing
