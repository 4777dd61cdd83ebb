"""The layers of the runtime, read from its source: who may import gRPC and the contract's code,
and the error catalog against the contract's list of reasons."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import grpc
import pytest

import layotto.server
from layotto.proto.reasons import REASONS
from layotto.server import errors
from layotto.server.api.status import grpc_code, http_status, to_status

SERVER = Path(layotto.server.__file__).parent
#: modules speaking a backend's own protocol, which happens to be gRPC (etcd's API, through aetcd;
#: Dapr's pluggable components protocol, dapr.proto.components.v1 over a Unix socket)
BACKEND_PROTOCOL_MODULES = {
    "components/etcd_client.py",
    "components/configuration/etcd/__init__.py",
    "components/nameresolution/etcd/__init__.py",
    "components/pluggable/__init__.py",
    "components/pluggable/bindings.py",
    "components/pluggable/pubsub.py",
    "components/pluggable/state.py",
}
WIRE_PACKAGES = ("grpc", "grpc_health", "grpc_reflection", "google.rpc", "layotto.proto")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def wire_imports(path: Path) -> list[str]:
    return sorted(
        name for name in imported_modules(path) if any(name == p or name.startswith(f"{p}.") for p in WIRE_PACKAGES)
    )


def modules_under(folder: str) -> list[Path]:
    return sorted((SERVER / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["components", "runtime"])
def test_components_and_the_runtime_layer_know_no_grpc_and_no_protos(folder: str) -> None:
    offenders = {
        str(path.relative_to(SERVER)): wire_imports(path)
        for path in modules_under(folder)
        if str(path.relative_to(SERVER)) not in BACKEND_PROTOCOL_MODULES and wire_imports(path)
    }
    assert offenders == {}


def test_the_backend_protocol_allow_list_is_still_needed() -> None:
    for module in BACKEND_PROTOCOL_MODULES:
        assert "grpc" in imported_modules(SERVER / module), f"{module} no longer needs its exception"


def test_the_error_catalog_knows_no_wire_protocol() -> None:
    assert wire_imports(SERVER / "errors.py") == []


def test_components_and_the_runtime_layer_do_not_import_the_api_layer() -> None:
    for path in [*modules_under("components"), *modules_under("runtime"), SERVER / "config.py"]:
        assert not [n for n in imported_modules(path) if n.startswith("layotto.server.api")], path


def test_building_blocks_import_each_other_only_through_the_adapter_and_the_status_mapping() -> None:
    shared = {"layotto.server.api.adapter", "layotto.server.api.status"}
    for path in modules_under("api"):
        if path.name in ("services.py", "__init__.py"):
            continue  # services.py assembles the building blocks
        sideways = {
            n.rpartition(".")[0] if n.count(".") > 3 else n
            for n in imported_modules(path)
            if n.startswith("layotto.server.api.")
        } - shared
        assert not sideways, f"{path.name} imports {sorted(sideways)}"


def test_the_streamed_read_chunk_size_is_one_declaration_for_every_store_that_streams() -> None:
    """File and object stores (and the bindings over them) document and check ``chunkSize`` alike: each
    spec holds the one field of components/base.py, not a copy that could drift."""
    from layotto.server.components.base import CHUNK_SIZE
    from layotto.server.components.registry import BUILDING_BLOCKS, registry_for

    holders = {
        f"{block}.{type_name}": field
        for block in BUILDING_BLOCKS
        for type_name in registry_for(block).types()
        for field in registry_for(block).spec(type_name).metadata
        if field.name == CHUNK_SIZE.name
    }
    assert {"file.local", "oss.local", "oss.s3"} <= holders.keys()
    assert {name for name, field in holders.items() if field is not CHUNK_SIZE} == set()


# -- the error catalog against the contract ----------------------------------------------------


def every_error_class() -> set[type[errors.LayottoError]]:
    for info in pkgutil.walk_packages(layotto.server.__path__, "layotto.server."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)  # so that errors defined anywhere in the server are seen
    found: set[type[errors.LayottoError]] = set()
    pending = [errors.LayottoError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_reason_the_server_raises_is_in_the_contract_and_every_contract_reason_is_raised() -> None:
    reasons = {cls.reason for cls in every_error_class()}
    assert reasons - set(REASONS) == set(), "reasons the contract lacks"
    assert set(REASONS) - reasons == set(), "reasons of the contract no error of the server carries"


@pytest.mark.parametrize("cls", sorted(every_error_class(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_each_error_maps_to_its_contract_entry(cls: type[errors.LayottoError]) -> None:
    error = cls.__new__(cls)
    errors.LayottoError.__init__(error, "message", metadata={"field": "f"})
    if isinstance(error, errors.BulkPartialFailure):
        error.failures = {}
    if isinstance(error, errors.PassedOnError):  # keeps the status it came with, whatever its reason
        error.status = "NOT_FOUND"
        assert grpc_code(error) is grpc.StatusCode.NOT_FOUND
        return
    assert grpc_code(error) is grpc.StatusCode[REASONS[cls.reason].grpc]
    assert http_status(error) == REASONS[cls.reason].http


def test_a_bulk_failure_takes_the_code_its_failures_share_and_aborted_otherwise() -> None:
    invalid = errors.BulkPartialFailure({"a": errors.EtagInvalid("a", "x"), "b": errors.EtagInvalid("b", "y")})
    assert (grpc_code(invalid), http_status(invalid)) == (grpc.StatusCode.INVALID_ARGUMENT, 400)
    mixed = errors.BulkPartialFailure({"a": errors.EtagInvalid("a", "x"), "b": errors.EtagMismatch("b")})
    assert (grpc_code(mixed), http_status(mixed)) == (grpc.StatusCode.ABORTED, 409)
    code, message, trailers = to_status(invalid)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and message.startswith("2 item(s) failed")
    assert [key for key, _ in trailers] == ["grpc-status-details-bin"]
