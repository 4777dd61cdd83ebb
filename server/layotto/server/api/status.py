"""Domain errors to wire statuses: the one mapping of the runtime.

The table is the contract's list of reasons (``layotto.proto.reasons.REASONS``, read from
``error_reasons.json``): a :class:`~layotto.server.errors.LayottoError`'s ``reason`` gives
its gRPC status code and its HTTP status. The gRPC status carries the error's message and a
``google.rpc.ErrorInfo`` detail (reason, domain, metadata) in ``grpc-status-details-bin``.

A :class:`~layotto.server.errors.BulkPartialFailure` keeps its reason but takes the code of
its failures when they all share one (every item failed on a stale etag: ABORTED; on a bad
etag: INVALID_ARGUMENT), and its own (ABORTED) otherwise. A
:class:`~layotto.server.errors.PassedOnError` (an invoked app's error, another runtime's
error) keeps the status code it came with.

Messages and metadata values echo what a client sent, so both are clipped here
(:data:`~layotto.server.errors.MAX_MESSAGE_BYTES`, :data:`~layotto.server.errors.MAX_METADATA_VALUE_BYTES`):
no error answer can outgrow gRPC's limit on trailing metadata.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from layotto.proto.reasons import ERROR_DOMAIN, REASONS, Reason
from layotto.server.errors import (
    MAX_MESSAGE_BYTES,
    MAX_METADATA_VALUE_BYTES,
    BulkPartialFailure,
    LayottoError,
    PassedOnError,
    clip,
)

STATUS_DETAILS_KEY = "grpc-status-details-bin"
Trailers = tuple[tuple[str, bytes], ...]


def _entry(error: LayottoError) -> Reason:
    """The contract's entry for the error's reason (INTERNAL's for a reason the list lacks, which a test forbids)."""
    return REASONS.get(error.reason) or REASONS["INTERNAL"]


def _shared(error: BulkPartialFailure) -> Reason | None:
    """The one entry every failure of a bulk write maps to, or None when they differ."""
    entries = {_entry(failure) for failure in error.failures.values()}
    return entries.pop() if len(entries) == 1 else None


def grpc_code(error: LayottoError) -> grpc.StatusCode:
    """The gRPC status code of an error."""
    if isinstance(error, PassedOnError):
        return getattr(grpc.StatusCode, error.status, grpc.StatusCode.UNKNOWN)
    if isinstance(error, BulkPartialFailure) and (shared := _shared(error)) is not None:
        return grpc.StatusCode[shared.grpc]
    return grpc.StatusCode[_entry(error).grpc]


def http_status(error: LayottoError) -> int:
    """The HTTP status of an error (for an HTTP front end), from the same list."""
    if isinstance(error, BulkPartialFailure) and (shared := _shared(error)) is not None:
        return shared.http
    return _entry(error).http


def bounded_message(error: LayottoError) -> str:
    """The error's message, clipped to MAX_MESSAGE_BYTES."""
    return clip(error.message, MAX_MESSAGE_BYTES)


def bounded_metadata(error: LayottoError) -> dict[str, str]:
    """The error's metadata, each value clipped to MAX_METADATA_VALUE_BYTES."""
    return {key: clip(value, MAX_METADATA_VALUE_BYTES) for key, value in error.metadata.items()}


def error_info(error: LayottoError) -> error_details_pb2.ErrorInfo:
    """The ``google.rpc.ErrorInfo`` detail of an error: its reason, the runtime's domain, its (clipped) metadata."""
    return error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=bounded_metadata(error))


def to_status(error: LayottoError) -> tuple[grpc.StatusCode, str, Trailers]:
    """The gRPC code, message and trailing metadata (the rich status details) for an error."""
    code = grpc_code(error)
    detail = any_pb2.Any()
    detail.Pack(error_info(error))
    message = bounded_message(error)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return code, message, ((STATUS_DETAILS_KEY, status.SerializeToString()),)
