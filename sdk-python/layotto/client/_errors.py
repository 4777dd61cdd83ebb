"""The SDK's one exception tree, and the one place gRPC errors are translated into it.

::

    LayottoError
    ├── RuntimeUnavailable          the runtime cannot be reached (after retries)
    ├── DeadlineExceeded            the call's timeout passed (also a TimeoutError)
    ├── InvalidArgument             the request was refused; .field names what was wrong
    │   ├── StoreNotFound           no component of that name is configured
    │   └── EtagInvalid             the etag is not one the store issued
    ├── EtagMismatch                the etag is stale: someone else wrote first
    ├── BulkWriteError              some items of a bulk write failed; .failed_keys
    ├── NoComponentsConfigured      the runtime has no component of that building block
    ├── FeatureNotSupported         the component lacks the feature (etag, ttl, ...)
    ├── NotFound                    the named thing does not exist
    │   └── SecretNotFound          the secret store has no secret of that name
    ├── NotImplementedByRuntime     the runtime does not serve this API
    ├── RuntimeInternalError        the runtime or its backend failed
    ├── LockNotAcquired             lock.acquire found the lock held by someone else
    └── LockLost                    a held lock expired or was taken before the block ended
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "BulkWriteError",
    "DeadlineExceeded",
    "EtagInvalid",
    "EtagMismatch",
    "FeatureNotSupported",
    "InvalidArgument",
    "LayottoError",
    "LockLost",
    "LockNotAcquired",
    "NoComponentsConfigured",
    "NotFound",
    "NotImplementedByRuntime",
    "RuntimeInternalError",
    "RuntimeUnavailable",
    "SecretNotFound",
    "StoreNotFound",
]


class LayottoError(Exception):
    """Base of every error the SDK raises. ``code`` is the gRPC status name."""

    def __init__(
        self, message: str, *, code: str = "UNKNOWN", reason: str = "", metadata: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.metadata = dict(metadata or {})


class RuntimeUnavailable(LayottoError):
    pass


class DeadlineExceeded(LayottoError, TimeoutError):
    pass


class InvalidArgument(LayottoError):
    @property
    def field(self) -> str | None:
        return self.metadata.get("field")


class StoreNotFound(InvalidArgument):
    pass


class EtagInvalid(InvalidArgument):
    pass


class EtagMismatch(LayottoError):
    @property
    def key(self) -> str | None:
        return self.metadata.get("key")


class BulkWriteError(LayottoError):
    @property
    def failed_keys(self) -> list[str]:
        keys = self.metadata.get("failed_keys", "")
        return keys.split(",") if keys else []


class NoComponentsConfigured(LayottoError):
    pass


class FeatureNotSupported(LayottoError):
    pass


class NotFound(LayottoError):
    pass


class SecretNotFound(NotFound):
    pass


class NotImplementedByRuntime(LayottoError):
    pass


class RuntimeInternalError(LayottoError):
    pass


class LockNotAcquired(LayottoError):
    """``lock.acquire`` found the lock held by someone else (for longer than ``wait``)."""


class LockLost(LayottoError):
    """A lock held by ``lock.acquire`` expired or was taken before the block ended."""


_BY_REASON: dict[str, type[LayottoError]] = {
    "COMPONENT_NOT_FOUND": StoreNotFound,
    "SECRET_NOT_FOUND": SecretNotFound,
    "ETAG_INVALID": EtagInvalid,
    "ETAG_MISMATCH": EtagMismatch,
    "BULK_PARTIAL_FAILURE": BulkWriteError,
    "NO_COMPONENTS_CONFIGURED": NoComponentsConfigured,
    "FEATURE_NOT_SUPPORTED": FeatureNotSupported,
}

_BY_CODE: dict[grpc.StatusCode, type[LayottoError]] = {
    grpc.StatusCode.UNAVAILABLE: RuntimeUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.ABORTED: EtagMismatch,
    grpc.StatusCode.FAILED_PRECONDITION: NoComponentsConfigured,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.UNIMPLEMENTED: NotImplementedByRuntime,
}


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    trailers = cast("Sequence[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info
    return None


def translate(error: grpc.aio.AioRpcError) -> LayottoError:
    """The SDK exception for a failed call (the one translation boundary)."""
    code = error.code()
    info = _error_info(error)
    reason = info.reason if info is not None else ""
    metadata = dict(info.metadata) if info is not None else {}
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, RuntimeInternalError)
    return cls(error.details() or code.name, code=code.name, reason=reason, metadata=metadata)
