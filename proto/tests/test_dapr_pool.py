"""The generated Dapr modules live in a private descriptor pool, next to Dapr's own SDK.

Dapr's Python SDK registers the same ``dapr.proto.*`` names in protobuf's default pool;
both must import in one interpreter, in either order, and speak the same wire format.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import any_pb2, descriptor_pool, timestamp_pb2

import layotto.proto.dapr
from layotto.proto.dapr import pool
from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import state_pb2

BOTH_CONTRACTS = textwrap.dedent("""
    import sys
    from google.protobuf import descriptor_pool

    if sys.argv[1] == "dapr-first":
        import dapr.clients
        from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, state_pb2 as ours
    else:
        from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, state_pb2 as ours
        import dapr.clients
    from dapr.proto.runtime.v1 import state_pb2 as theirs

    assert ours.GetStateRequest is not theirs.GetStateRequest
    assert descriptor_pool.Default().FindMessageTypeByName("dapr.proto.runtime.v1.GetStateRequest").file.name == (
        "dapr/proto/runtime/v1/state.proto"
    )
    request = ours.GetStateRequest(store_name="s", key="k", metadata={"m": "1"})
    assert theirs.GetStateRequest.FromString(request.SerializeToString()) == theirs.GetStateRequest(
        store_name="s", key="k", metadata={"m": "1"}
    )
    answer = theirs.GetStateResponse(data=b"v", etag="3")
    assert ours.GetStateResponse.FromString(answer.SerializeToString()) == ours.GetStateResponse(data=b"v", etag="3")
    print("coexist ok")
""")


@pytest.mark.parametrize("first", ["dapr-first", "layotto-first"])
def test_dapr_sdk_and_generated_modules_import_in_either_order(first: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BOTH_CONTRACTS, first], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "coexist ok"


def _dapr_pb2_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(layotto.proto.dapr.__path__, "layotto.proto.dapr.")
        if info.name.endswith("_pb2")
    ]


def test_every_dapr_file_is_in_the_private_pool_and_none_in_the_default_one() -> None:
    modules = _dapr_pb2_modules()
    assert len(modules) == len(list(Path(layotto.proto.dapr.__file__).parent.rglob("*.proto")))
    for name in modules:
        file = importlib.import_module(name).DESCRIPTOR
        assert file.pool is pool.POOL, name
        assert pool.POOL.FindFileByName(file.name) is file
        with pytest.raises(KeyError):
            descriptor_pool.Default().FindFileByName(file.name)
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("dapr.proto.common.v1.HTTPExtension")


def test_well_known_types_inside_dapr_messages_keep_their_helpers() -> None:
    request = common_pb2.InvokeRequest(method="m")
    request.data.Pack(timestamp_pb2.Timestamp(seconds=7))
    unpacked = timestamp_pb2.Timestamp()
    assert request.data.Unpack(unpacked) and unpacked.seconds == 7
    value = any_pb2.Any(type_url="type.googleapis.com/x.Y", value=b"\x08\x01")
    request.data.ParseFromString(value.SerializeToString())
    assert (request.data.type_url, request.data.value) == (value.type_url, value.value)
    assert state_pb2.GetStateResponse(data=b"v").data == b"v"
