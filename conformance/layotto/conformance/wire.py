"""The two wire APIs a runtime serves, behind one shape, so each case runs on both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from layotto.proto.dapr.common.v1 import common_pb2 as dapr_common
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, invoke_pb2, secret_pb2, state_pb2
from layotto.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc


@dataclass(frozen=True)
class WireApi:
    """Request classes and a stub of one API (Layotto's Runtime or Dapr's Dapr)."""

    name: str
    stub: Any
    GetStateRequest: Any
    GetBulkStateRequest: Any
    SaveStateRequest: Any
    DeleteStateRequest: Any
    DeleteBulkStateRequest: Any
    ExecuteStateTransactionRequest: Any
    TransactionalStateOperation: Any
    StateItem: Any
    Etag: Any
    StateOptions: Any
    GetSecretRequest: Any
    GetBulkSecretRequest: Any
    InvokeServiceRequest: Any
    InvokeRequest: Any  # Layotto's CommonInvokeRequest, Dapr's InvokeRequest


def layotto_api(channel: grpc.aio.Channel) -> WireApi:
    pb = runtime_pb2
    return WireApi(
        "layotto",
        runtime_pb2_grpc.RuntimeStub(channel),
        pb.GetStateRequest,
        pb.GetBulkStateRequest,
        pb.SaveStateRequest,
        pb.DeleteStateRequest,
        pb.DeleteBulkStateRequest,
        pb.ExecuteStateTransactionRequest,
        pb.TransactionalStateOperation,
        pb.StateItem,
        pb.Etag,
        pb.StateOptions,
        pb.GetSecretRequest,
        pb.GetBulkSecretRequest,
        pb.InvokeServiceRequest,
        pb.CommonInvokeRequest,
    )


def dapr_api(channel: grpc.aio.Channel) -> WireApi:
    return WireApi(
        "dapr",
        dapr_pb2_grpc.DaprStub(channel),
        state_pb2.GetStateRequest,
        state_pb2.GetBulkStateRequest,
        state_pb2.SaveStateRequest,
        state_pb2.DeleteStateRequest,
        state_pb2.DeleteBulkStateRequest,
        state_pb2.ExecuteStateTransactionRequest,
        state_pb2.TransactionalStateOperation,
        dapr_common.StateItem,
        dapr_common.Etag,
        dapr_common.StateOptions,
        secret_pb2.GetSecretRequest,
        secret_pb2.GetBulkSecretRequest,
        invoke_pb2.InvokeServiceRequest,
        dapr_common.InvokeRequest,
    )


WIRE_APIS = {"layotto": layotto_api, "dapr": dapr_api}
