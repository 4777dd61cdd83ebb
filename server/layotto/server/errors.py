"""The one error catalog of the runtime.

Components and API handlers raise these exceptions; exactly one place
(:func:`to_status`, used by the service adapter) turns them into a gRPC status. Each
error carries a stable machine-readable ``reason`` (sent as a ``google.rpc.ErrorInfo``
detail, the way Dapr reports errors) and a message that names the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "layotto.python"


class LayottoError(Exception):
    """Base of every error the runtime reports to a client."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})


class InvalidArgument(LayottoError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", metadata={"field": field})
        self.field = field


class ComponentNotFound(LayottoError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "COMPONENT_NOT_FOUND"

    def __init__(self, field: str, kind: str, name: str, available: list[str]) -> None:
        choices = ", ".join(available) or "none"
        super().__init__(
            f"{field}: {kind} {name!r} is not found (configured: {choices})",
            metadata={"field": field, "component": name},
        )


class NoComponentsConfigured(LayottoError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NO_COMPONENTS_CONFIGURED"

    def __init__(self, kind: str) -> None:
        super().__init__(f"no {kind} is configured in this runtime")


class FeatureNotSupported(LayottoError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "FEATURE_NOT_SUPPORTED"

    def __init__(self, component: str, feature: str) -> None:
        super().__init__(
            f"component {component!r} does not support {feature}",
            metadata={"component": component, "feature": feature},
        )


class EtagMismatch(LayottoError):
    code = grpc.StatusCode.ABORTED
    reason = "ETAG_MISMATCH"

    def __init__(self, key: str, field: str = "etag") -> None:
        super().__init__(f"{field}: etag mismatch for key {key!r}", metadata={"key": key, "field": field})
        self.key = key


class EtagInvalid(LayottoError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "ETAG_INVALID"

    def __init__(self, key: str, etag: str, field: str = "etag") -> None:
        super().__init__(
            f"{field}: {etag!r} is not an etag issued by this store (key {key!r})",
            metadata={"key": key, "field": field},
        )
        self.key = key


class BulkPartialFailure(LayottoError):
    """Some items of a bulk write failed; the others were applied."""

    code = grpc.StatusCode.ABORTED
    reason = "BULK_PARTIAL_FAILURE"

    def __init__(self, failures: Mapping[str, LayottoError]) -> None:
        parts = "; ".join(f.message for f in failures.values())
        super().__init__(
            f"{len(failures)} item(s) failed, the others were applied: {parts}",
            metadata={"failed_keys": ",".join(failures)},
        )
        self.failures = dict(failures)
        codes = {type(f).code for f in failures.values()}
        self.code = codes.pop() if len(codes) == 1 else grpc.StatusCode.ABORTED


class SecretNotFound(LayottoError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "SECRET_NOT_FOUND"

    def __init__(self, store: str, name: str) -> None:
        super().__init__(f"key: secret store {store!r} has no secret {name!r}", metadata={"field": "key"})


class SecretAccessDenied(LayottoError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "SECRET_ACCESS_DENIED"

    def __init__(self, store: str, name: str) -> None:
        super().__init__(
            f"key: secret {name!r} of secret store {store!r} is not allowed by its secret scope",
            metadata={"field": "key"},
        )


class PayloadTooLarge(LayottoError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "PAYLOAD_TOO_LARGE"

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(f"{field}: {size} bytes is over the {limit}-byte limit", metadata={"field": field})


class BackendUnavailable(LayottoError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, component: str, detail: str) -> None:
        super().__init__(f"component {component!r} is unavailable: {detail}", metadata={"component": component})


class BackendError(LayottoError):
    code = grpc.StatusCode.INTERNAL
    reason = "BACKEND_ERROR"

    def __init__(self, component: str, detail: str) -> None:
        super().__init__(f"component {component!r} failed: {detail}", metadata={"component": component})


class NotImplementedRpc(LayottoError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "RPC_NOT_IMPLEMENTED"

    def __init__(self, method: str) -> None:
        super().__init__(f"{method} is not implemented by this runtime yet", metadata={"method": method})


def to_status(error: LayottoError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """The gRPC code, message and trailing metadata (rich status details) for an error."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=error.code.value[0], message=error.message, details=[detail])
    return error.code, error.message, (("grpc-status-details-bin", status.SerializeToString()),)
