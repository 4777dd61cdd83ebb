"""The File API cases pass a correct file store and fail broken ones (an in-process runtime, local
stores below its data_dir); the s3 store runs them in the conformance-backends env, against moto."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from layotto.conformance.cases import FILE_CASES
from layotto.conformance.cli import RunnerConfig, check_target
from layotto.conformance.model import Outcome
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.file import FilePage
from layotto.server.components.file.local import LocalFileStore
from layotto.server.components.registry import registry_for
from layotto.server.config import ComponentConfig


class CommitsCancelledUploads(LocalFileStore):
    """Stores what a cancelled PutFile sent before the cancel: a partial file the suite must catch."""

    spec = dataclasses.replace(LocalFileStore.spec, type="test-commits-cancelled")

    async def put(self, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str], field: str) -> None:
        received = []
        try:
            async for chunk in chunks:
                received.append(chunk)
        except asyncio.CancelledError:
            pass

        async def replay() -> AsyncIterator[bytes]:
            for chunk in received:
                yield chunk

        await super().put(name, replay(), metadata, field)


class NeverTruncated(LocalFileStore):
    """Answers is_truncated false on every page: a client would stop after the first."""

    spec = dataclasses.replace(LocalFileStore.spec, type="test-never-truncated")

    async def list(self, prefix: str, page_size: int, marker: str) -> FilePage:
        page = await super().list(prefix, page_size, marker)
        return dataclasses.replace(page, is_truncated=False)


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[str]:
    for cls in (CommitsCancelledUploads, NeverTruncated):
        registry_for("file").register(cls)
    stores = {"good": "local", "partial": "test-commits-cancelled", "untruncated": "test-never-truncated"}
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "file": {name: ComponentConfig(kind, {"rootPath": name}) for name, kind in stores.items()},
        },
    )
    async with Runtime(config) as runtime:
        yield f"127.0.0.1:{runtime.grpc_port}"


async def test_a_correct_file_store_passes_every_file_case(address: str, tmp_path: Path) -> None:
    results, problems = await check_target(address, RunnerConfig(components={("file", "good"): None}), None)
    assert problems == []
    ran = {r.case: r.outcome for r in results if r.block == "file"}
    assert ran == {case.id: Outcome.PASS for case in FILE_CASES}, [r.detail for r in results if r.detail]
    assert {r.api for r in results if r.block == "file"} == {"layotto"}  # Dapr's API has no file RPCs
    assert (tmp_path / "good" / ".layotto").is_dir()  # a relative rootPath is below the data_dir


@pytest.mark.parametrize(
    ("store", "case", "detail"),
    [
        ("partial", "file-put-cancelled", "after its upload was cancelled"),
        ("untruncated", "file-list-paging", "ListFile pages of 2"),
    ],
)
async def test_a_broken_file_store_fails_its_case(address: str, store: str, case: str, detail: str) -> None:
    results, _ = await check_target(address, RunnerConfig(components={("file", store): None}), {case})
    (result,) = [r for r in results if r.block == "file"]
    assert result.outcome is Outcome.FAIL and detail in result.detail, result
