"""The compiled descriptors must match Layotto's and Dapr's wire listings exactly."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from google.protobuf import descriptor as _d

import layotto.proto
from layotto.proto.wirelisting import compare_with_descriptors, parse_listing

REFERENCE = Path(__file__).parent / "reference"


def _file_descriptors(prefix: str) -> list[_d.FileDescriptor]:
    found = []
    for info in pkgutil.walk_packages(layotto.proto.__path__, "layotto.proto."):
        if info.name.endswith("_pb2") and info.name.startswith(prefix):
            found.append(importlib.import_module(info.name).DESCRIPTOR)
    return found


@pytest.mark.parametrize(
    ("listing", "module_prefixes"),
    [
        ("layotto-wire.txt", ("layotto.proto.runtime", "layotto.proto.extension", "layotto.proto.pluggable")),
        ("dapr-wire.txt", ("layotto.proto.dapr",)),
    ],
)
def test_descriptors_match_listing(listing: str, module_prefixes: tuple[str, ...]) -> None:
    wire = parse_listing((REFERENCE / listing).read_text())
    files = [fd for prefix in module_prefixes for fd in _file_descriptors(prefix)]
    assert len(files) == len(wire), "one compiled file per listed file"
    assert compare_with_descriptors(wire, files) == []


def test_comparison_reports_drift() -> None:
    """The comparison itself must notice a renumbered field, a renamed RPC and an extra message."""
    text = (REFERENCE / "layotto-wire.txt").read_text()
    drifted = (
        text.replace(
            "string store_name=1; string key=2; spec.proto.runtime.v1.StateOptions",
            "string store_name=1; string key=9; spec.proto.runtime.v1.StateOptions",
        )
        .replace("rpc GetBulkState(", "rpc GetStateBulk(")
        .replace("message spec.proto.runtime.v1.Etag { string value=1 }\n", "")
    )
    files = [
        fd
        for p in ("layotto.proto.runtime", "layotto.proto.extension", "layotto.proto.pluggable")
        for fd in _file_descriptors(p)
    ]
    problems = compare_with_descriptors(parse_listing(drifted), files)
    assert any("GetStateRequest.key" in p for p in problems)
    assert any("GetStateBulk is missing" in p for p in problems)
    assert any("GetBulkState is not in the listing" in p for p in problems)
    assert any("message spec.proto.runtime.v1.Etag is not in the listing" in p for p in problems)


def test_runtime_method_paths_are_layotto_paths() -> None:
    from layotto.proto.runtime.v1 import runtime_pb2

    service = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"]
    assert service.full_name == "spec.proto.runtime.v1.Runtime"
    request = runtime_pb2.ExecuteStateTransactionRequest.DESCRIPTOR
    assert [f.name for f in request.fields] == ["storeName", "operations", "metadata"]
