"""The SDK's one exception tree, and the one place foreign errors are translated into it.

::

    LayottoError
    ├── RuntimeUnavailable          the runtime cannot be reached, or is shutting down (after retries)
    ├── BackendUnavailable          the runtime is up, its component's backend is not (not retried)
    ├── ClientClosed                the client, or a subscription, was used after it closed
    ├── DeadlineExceeded            the call's timeout passed (also a TimeoutError)
    ├── InvalidArgument             the request was refused; .field names what was wrong
    │   ├── MalformedRequest        the runtime could not decode the request
    │   ├── StoreNotFound           no component of that name is configured
    │   ├── EtagInvalid             the etag is not one the store issued
    │   ├── DecryptionFailed        the ciphertext does not verify (tampered, or another key's)
    │   └── PayloadTooLarge         a request, response or field is over a size limit
    ├── PermissionDenied            the runtime's scopes do not allow it (a secret, an invocation)
    ├── Unauthenticated             the runtime wants its API token (DAPR_API_TOKEN), missing or wrong
    ├── EtagMismatch                the etag is stale: someone else wrote first
    ├── BulkWriteError              some items of a bulk write failed; .failed_keys
    ├── NoComponentsConfigured      the runtime has no component of that building block
    ├── FeatureNotSupported         the component lacks the feature (etag, ttl, ...)
    ├── NotFound                    the named thing does not exist
    │   ├── SecretNotFound          the secret store has no secret of that name
    │   ├── FileNotFound            files: the file store has no file of that name
    │   ├── AppNotFound             invoke: name resolution knows no app of that id
    │   ├── KeyNotFound             the key store has no key of that name
    │   └── JobNotFound             jobs: the app has no job of that name
    ├── JobAlreadyExists            jobs.schedule: the name is taken and overwrite was not set
    ├── AppUnavailable              invoke: the target app, or every sidecar of it, does not answer
    ├── AppError                    invoke: the target app answered with an error (.app_id, .http_status)
    ├── RateLimited                 flow control: over the configured rate (.retry_after seconds)
    ├── CircuitOpen                 resiliency: the target's circuit breaker is open (.target, .breaker)
    ├── DeliveryRefused             email, SMS, phone: the mail server or gateway refused the message
    ├── NotImplementedByRuntime     the runtime does not serve this API
    ├── RuntimeInternalError        the runtime failed unexpectedly
    │   └── BackendError            the component's backend answered with an error
    ├── LockNotAcquired             lock.acquire found the lock held by someone else
    └── LockLost                    a held lock expired or was taken before the block ended
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2

from layotto.proto.reasons import ERROR_DOMAIN

__all__ = [
    "AppError",
    "AppNotFound",
    "AppUnavailable",
    "BackendError",
    "BackendUnavailable",
    "BulkWriteError",
    "CircuitOpen",
    "ClientClosed",
    "DeadlineExceeded",
    "DecryptionFailed",
    "EtagInvalid",
    "EtagMismatch",
    "FeatureNotSupported",
    "FileNotFound",
    "InvalidArgument",
    "KeyNotFound",
    "JobAlreadyExists",
    "JobNotFound",
    "LayottoError",
    "LockLost",
    "LockNotAcquired",
    "MalformedRequest",
    "NoComponentsConfigured",
    "NotFound",
    "NotImplementedByRuntime",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RuntimeInternalError",
    "RuntimeUnavailable",
    "SecretNotFound",
    "StoreNotFound",
    "Unauthenticated",
]


class LayottoError(Exception):
    """Base of every error the SDK raises. ``code`` is the gRPC status name, ``reason`` the
    runtime's reason (a key of :data:`layotto.proto.reasons.REASONS`, "" when it sent none),
    ``metadata`` its details (``field``, ``key``, ...). ``transport_failure`` is True when gRPC's
    client core failed the call itself, with no answer from the runtime (see :func:`core_failure`)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "UNKNOWN",
        reason: str = "",
        metadata: dict[str, str] | None = None,
        transport_failure: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.transport_failure = transport_failure


class RuntimeUnavailable(LayottoError):
    """The runtime could not be reached, or answered that it is shutting down, on every attempt
    the retry policy and the call's deadline allowed."""


class BackendUnavailable(LayottoError):
    """The runtime is up but the component's backend (Redis, a broker, ...) cannot be reached.
    Not retried by the SDK: the runtime has already retried its connection."""


class ClientClosed(LayottoError):
    """The client was used after ``aclose()`` (or after its ``async with`` block), or a
    subscription's message was answered (ack, retry, drop) after the subscription closed."""


class DeadlineExceeded(LayottoError, TimeoutError):
    """The call's timeout passed before the runtime answered."""


class InvalidArgument(LayottoError):
    """The runtime refused the request; ``field`` names the offending request field."""

    @property
    def field(self) -> str | None:
        return self.metadata.get("field")


class MalformedRequest(InvalidArgument):
    """The runtime could not decode the request bytes as the RPC's message."""


class StoreNotFound(InvalidArgument):
    """No component of that name is configured; ``metadata["component"]`` names it."""


class EtagInvalid(InvalidArgument):
    """The etag is not one the store issued."""


class PayloadTooLarge(InvalidArgument):
    """A request, a response or one of its fields is over a size limit (the runtime's or the
    client's ``max_message_bytes``)."""


class PermissionDenied(LayottoError):
    """The runtime's scopes do not allow the call (a secret outside the store's scope)."""


class EtagMismatch(LayottoError):
    """The etag is stale: someone else wrote first; ``key`` names the key."""

    @property
    def key(self) -> str | None:
        return self.metadata.get("key")


class BulkWriteError(LayottoError):
    """Some items of a bulk write failed (``failed_keys``); the others were applied."""

    @property
    def failed_keys(self) -> list[str]:
        keys = self.metadata.get("failed_keys", "")
        return keys.split(",") if keys else []


class NoComponentsConfigured(LayottoError):
    """The runtime has no component of the building block the call needs."""


class FeatureNotSupported(LayottoError):
    """The component lacks the feature the request needs (etag, ttl, transactions, ...)."""


class NotFound(LayottoError):
    """The named thing does not exist."""


class SecretNotFound(NotFound):
    """The secret store has no secret of that name."""


class FileNotFound(NotFound):
    """``files``: the file store has no file of that name; ``metadata["file"]`` names it."""


class AppNotFound(NotFound):
    """``invoke``: name resolution knows no instance of the app id (``metadata["app_id"]``)."""


class AppUnavailable(LayottoError):
    """``invoke``: the target app, or every sidecar serving it, cannot be reached."""


class RateLimited(LayottoError):
    """The runtime's flow control refused the call: over the rate of its gRPC method or of the
    invoked app id. ``retry_after`` is the seconds until a call would pass (None if not sent)."""

    @property
    def retry_after(self) -> float | None:
        value = self.metadata.get("retry_after_seconds")
        return float(value) if value else None


class CircuitOpen(LayottoError):
    """The runtime's resiliency policy refused the call: the circuit breaker of its target (an
    invoked app id, or a component) is open after failures. ``target`` and ``breaker`` name them."""

    @property
    def target(self) -> str | None:
        return self.metadata.get("target")

    @property
    def breaker(self) -> str | None:
        return self.metadata.get("breaker")


class AppError(LayottoError):
    """``invoke``: the target app answered with an error; ``code`` is the app's own (an HTTP app's
    status mapped as Dapr does), ``http_status`` the HTTP app's status (None from a gRPC app)."""

    @property
    def app_id(self) -> str | None:
        return self.metadata.get("app_id")

    @property
    def http_status(self) -> int | None:
        status = self.metadata.get("http_status", "")
        return int(status) if status.isdigit() else None


class KeyNotFound(NotFound):
    """The key store has no key of that name (or version); ``metadata["key"]`` names it."""


class JobNotFound(NotFound):
    """``jobs``: the app has no job of that name; ``metadata["name"]`` names it."""


class JobAlreadyExists(LayottoError):
    """``jobs.schedule``: a job of that name exists and ``overwrite`` was not set."""


class DecryptionFailed(InvalidArgument):
    """The ciphertext does not verify: tampered, truncated, or sealed with another key. No
    plaintext is returned."""


class DeliveryRefused(LayottoError):
    """The mail server or message gateway refused the message for good (its answer is in the
    message); sending it again unchanged will not help."""


class Unauthenticated(LayottoError):
    """The runtime requires an API token (``DAPR_API_TOKEN``) and the call's was missing or wrong."""


class NotImplementedByRuntime(LayottoError):
    """The runtime does not serve this RPC."""


class RuntimeInternalError(LayottoError):
    """The runtime failed unexpectedly (it logs the cause)."""


class BackendError(RuntimeInternalError):
    """The component's backend answered with an error."""


class LockNotAcquired(LayottoError):
    """``lock.acquire`` found the lock held by someone else (for longer than ``wait``)."""


class LockLost(LayottoError):
    """A lock held by ``lock.acquire`` expired or was taken before the block ended."""


#: the exception of each reason of the contract (``layotto.proto.reasons.REASONS``)
BY_REASON: dict[str, type[LayottoError]] = {
    "INTERNAL": RuntimeInternalError,
    "INVALID_ARGUMENT": InvalidArgument,
    "MALFORMED_REQUEST": MalformedRequest,
    "COMPONENT_NOT_FOUND": StoreNotFound,
    "NO_COMPONENTS_CONFIGURED": NoComponentsConfigured,
    "FEATURE_NOT_SUPPORTED": FeatureNotSupported,
    "ETAG_MISMATCH": EtagMismatch,
    "ETAG_INVALID": EtagInvalid,
    "BULK_PARTIAL_FAILURE": BulkWriteError,
    "SECRET_NOT_FOUND": SecretNotFound,
    "SECRET_ACCESS_DENIED": PermissionDenied,
    "ACCESS_DENIED": PermissionDenied,
    "PAYLOAD_TOO_LARGE": PayloadTooLarge,
    "BACKEND_UNAVAILABLE": BackendUnavailable,
    "BACKEND_ERROR": BackendError,
    "RPC_NOT_IMPLEMENTED": NotImplementedByRuntime,
    "RUNTIME_SHUTTING_DOWN": RuntimeUnavailable,
    "UNAUTHENTICATED": Unauthenticated,
    "APP_NOT_FOUND": AppNotFound,
    "APP_UNAVAILABLE": AppUnavailable,
    "APP_ERROR": AppError,
    "RATE_LIMITED": RateLimited,
    "CIRCUIT_OPEN": CircuitOpen,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
    "KEY_NOT_FOUND": KeyNotFound,
    "DECRYPTION_FAILED": DecryptionFailed,
    "JOB_NOT_FOUND": JobNotFound,
    "JOB_ALREADY_EXISTS": JobAlreadyExists,
    "DELIVERY_REFUSED": DeliveryRefused,
    "FILE_NOT_FOUND": FileNotFound,
    "OBJECT_NOT_FOUND": NotFound,
}

#: the exception of a status that carries no reason (another server, a proxy, gRPC itself)
BY_CODE: dict[grpc.StatusCode, type[LayottoError]] = {
    grpc.StatusCode.UNAVAILABLE: RuntimeUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: PayloadTooLarge,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.ABORTED: EtagMismatch,
    grpc.StatusCode.FAILED_PRECONDITION: NoComponentsConfigured,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: JobAlreadyExists,
    grpc.StatusCode.UNIMPLEMENTED: NotImplementedByRuntime,
}


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The runtime's ``ErrorInfo`` detail of a failed call, if it sent one."""
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


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The reason of the runtime's ErrorInfo ("" when there is none, or it is another domain's)."""
    info = error_info(error)
    return info.reason if info is not None and info.domain in (ERROR_DOMAIN, "") else ""


#: the details of the INTERNAL status grpc.aio's client reports when its core fails a call
CORE_INTERNAL_ERROR = "Internal error from Core"


def core_failure(error: grpc.aio.AioRpcError) -> bool:
    """The call failed in gRPC's client core, not in the runtime: INTERNAL with exactly the core's
    details and no ErrorInfo (the runtime's every INTERNAL carries one).

    grpc.aio reports this when a stream's write meets a call the server has already ended, e.g.
    a stream opened against a runtime that is stopping and answers it UNAVAILABLE: the status the
    server sent is lost and the write fails in core (https://github.com/grpc/grpc/issues/36066).
    The runtime did not serve such a call; whether a unary call reached it is unknown.
    """
    return (
        error.code() is grpc.StatusCode.INTERNAL
        and error.details() == CORE_INTERNAL_ERROR
        and error_info(error) is None
    )


def translate_rpc_error(error: grpc.aio.AioRpcError) -> LayottoError:
    """The SDK exception for a failed call: by the runtime's reason, else by the status code.
    A failure of gRPC's core (:func:`core_failure`) is a RuntimeInternalError with ``transport_failure``."""
    code = error.code()
    info = error_info(error)
    reason = reason_of(error)
    metadata = dict(info.metadata) if info is not None else {}
    cls = BY_REASON.get(reason) or BY_CODE.get(code, RuntimeInternalError)
    return cls(
        error.details() or code.name,
        code=code.name,
        reason=reason,
        metadata=metadata,
        transport_failure=core_failure(error),
    )


#: the errors of grpc.aio that ``translate`` turns into the SDK's
GRPC_ERRORS = (grpc.aio.AioRpcError, grpc.aio.BaseError)


def translate(error: BaseException) -> BaseException:
    """The one boundary for foreign errors: gRPC's become the SDK's; others pass unchanged.
    (grpc.aio raises ``UsageError`` for a call on a closed channel: :class:`ClientClosed`.)"""
    if isinstance(error, grpc.aio.AioRpcError):
        return translate_rpc_error(error)
    if isinstance(error, grpc.aio.UsageError):
        return ClientClosed(f"the client is closed: {error}", code="CANCELLED")
    if isinstance(error, grpc.aio.BaseError):
        return RuntimeInternalError(f"gRPC failed: {error}", code="INTERNAL")
    return error
