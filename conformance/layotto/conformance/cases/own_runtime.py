"""Runtimes a case starts itself (``layotto serve``), holding the component under test as the target's
runtime config (the runner config's ``runtime:``) declares it, with what the case must change."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from layotto.conformance.model import CaseContext, CaseFailed
from layotto.conformance.spawn import serve


def declaration(ctx: CaseContext, block: str) -> dict[str, Any]:
    """The component under test as the target's runtime config declares it under ``block``
    (``type``, ``metadata``, ...); CaseFailed when there is no runtime config or no such component."""
    if ctx.runtime_config is None:
        raise CaseFailed(f"{block} cases start runtimes of their own: give the runner config a 'runtime:' entry")
    raw = yaml.safe_load(ctx.runtime_config.read_text()) or {}
    found = (raw.get(block) or {}).get(ctx.component)
    if found is None:
        raise CaseFailed(f"{ctx.runtime_config.name} declares no {block} component {ctx.component!r}")
    return dict(found)


def with_metadata(found: dict[str, Any], **metadata: str) -> dict[str, Any]:
    """``found`` (a declaration) with ``metadata`` set over its own."""
    return {**found, "metadata": {**(found.get("metadata") or {}), **metadata}}


@contextlib.asynccontextmanager
async def own_runtimes(config: dict[str, Any], count: int = 1) -> AsyncIterator[list[str]]:
    """``count`` runtimes of the runtime config ``config`` (a mapping, written to a temporary
    directory they run in); their gRPC addresses. Each must stop cleanly on exit."""
    with tempfile.TemporaryDirectory(prefix="layotto-conformance-runtime-") as folder:
        path = Path(folder) / "runtime.yaml"
        path.write_text(yaml.safe_dump(config))
        async with contextlib.AsyncExitStack() as stack:
            yield [await stack.enter_async_context(serve(path)) for _ in range(count)]
