"""Cases, their context and their outcomes."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from layotto.conformance.wire import WireApi


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


class CaseFailed(AssertionError):
    """A case's expectation did not hold."""


@dataclass
class CaseContext:
    """What a case gets: the API to call, the component under test and its features."""

    api: WireApi
    channel: grpc.aio.Channel
    component: str
    features: frozenset[str]
    timeout: float = 10.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    #: the target's runtime config (the runner config's ``runtime:``), for cases that start runtimes of their own
    runtime_config: Path | None = None

    def key(self, name: str) -> str:
        """A key unique to this run, so stale data from earlier runs never interferes."""
        return f"conformance-{self.run_id}-{name}"

    async def call(self, rpc: str, request: Any) -> Any:
        return await getattr(self.api.stub, rpc)(request, timeout=self.timeout)

    async def expect_error(self, rpc: str, request: Any, *codes: grpc.StatusCode, mentions: str = "") -> None:
        """The call must fail with one of ``codes``, its message naming ``mentions``."""
        try:
            await self.call(rpc, request)
        except grpc.aio.AioRpcError as error:
            if error.code() not in codes:
                names = "/".join(c.name for c in codes)
                raise CaseFailed(f"{rpc}: expected {names}, got {error.code().name}: {error.details()}") from None
            if mentions and mentions not in (error.details() or ""):
                raise CaseFailed(f"{rpc}: the message {error.details()!r} does not name {mentions!r}") from None
            return
        raise CaseFailed(f"{rpc}: expected {'/'.join(c.name for c in codes)}, but the call succeeded")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CaseFailed(message)


@dataclass(frozen=True)
class Case:
    """One behaviour to check on one component."""

    id: str
    block: str
    description: str
    rpcs: tuple[str, ...]
    run: Callable[[CaseContext], Awaitable[None]]
    requires: frozenset[str] = frozenset()
    requires_absent: frozenset[str] = frozenset()
    apis: tuple[str, ...] = ("layotto", "dapr")

    def skip_reason(self, features: frozenset[str]) -> str | None:
        missing = self.requires - features
        if missing:
            return f"component does not declare {', '.join(sorted(missing))}"
        present = self.requires_absent & features
        if present:
            return f"checks the absence of {', '.join(sorted(present))}, which the component declares"
        return None


@dataclass(frozen=True)
class CaseResult:
    api: str
    block: str
    component: str
    case: str
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0
