"""The one error catalog of the runtime: domain errors, free of any wire protocol.

Components, the runtime layer and API handlers raise these exceptions. Each carries a
stable machine-readable ``reason`` from the contract's list
(``layotto.proto.reasons.REASONS``, read from ``error_reasons.json``) and a message that
names the offending field. Nothing here knows gRPC: the API layer alone
(:mod:`layotto.server.api.status`) maps a reason to a gRPC status code (or an HTTP status)
with that list, and sends the reason as a ``google.rpc.ErrorInfo`` detail, the way Dapr
reports errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

#: the most an error answer carries, in UTF-8 bytes: its message, and each value of its ErrorInfo
#: metadata. Messages echo what a client sent (names, keys, an app's error), so the API layer clips
#: them (:func:`clip`) to keep every answer far inside gRPC's 8 KiB limit on trailing metadata.
MAX_MESSAGE_BYTES = 1024
MAX_METADATA_VALUE_BYTES = 512


def clip(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` UTF-8 bytes, else its longest prefix that fits with "…"."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - len("…".encode())].decode("utf-8", "ignore") + "…"


def _joined_within(keys: list[str], limit: int) -> str:
    """The first ``keys`` joined by "," in at most ``limit`` bytes (whole keys only)."""
    taken: list[str] = []
    size = -1
    for key in keys:
        size += len(key.encode()) + 1
        if size > limit:
            break
        taken.append(key)
    return ",".join(taken)


class LayottoError(Exception):
    """Base of every error the runtime reports to a client."""

    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})


class InvalidArgument(LayottoError):
    """A request field is missing, malformed or out of range; ``field`` names it (``states[0].key``)."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", metadata={"field": field})
        self.field = field


class ComponentNotFound(LayottoError):
    """The request names a component that is not configured; the message lists those that are."""

    reason = "COMPONENT_NOT_FOUND"

    def __init__(self, field: str, kind: str, name: str, available: list[str]) -> None:
        choices = ", ".join(available) or "none"
        super().__init__(
            f"{field}: {kind} {name!r} is not found (configured: {choices})",
            metadata={"field": field, "component": name},
        )


class NoComponentsConfigured(LayottoError):
    """The runtime has no component of the building block the request needs."""

    reason = "NO_COMPONENTS_CONFIGURED"

    def __init__(self, kind: str) -> None:
        super().__init__(f"no {kind} is configured in this runtime")


class FeatureNotSupported(LayottoError):
    """The component lacks a feature the request needs (etags, transactions, TTL, ...)."""

    reason = "FEATURE_NOT_SUPPORTED"

    def __init__(self, component: str, feature: str) -> None:
        super().__init__(
            f"component {component!r} does not support {feature}",
            metadata={"component": component, "feature": feature},
        )


class EtagMismatch(LayottoError):
    """The etag is stale: the key was written (or deleted) since the etag was issued."""

    reason = "ETAG_MISMATCH"

    def __init__(self, key: str, field: str = "etag", *, first_write: bool = False) -> None:
        """``first_write``: a first-write save sent no etag and the key exists (``field`` is then
        the request's ``options.concurrency``)."""
        problem = (
            f"first-write conflict: key {key!r} already exists" if first_write else f"etag mismatch for key {key!r}"
        )
        super().__init__(f"{field}: {problem}", metadata={"key": key, "field": field})
        self.key = key


class EtagInvalid(LayottoError):
    """The etag is not one this store issued."""

    reason = "ETAG_INVALID"

    def __init__(self, key: str, etag: str, field: str = "etag") -> None:
        super().__init__(
            f"{field}: {etag!r} is not an etag issued by this store (key {key!r})",
            metadata={"key": key, "field": field},
        )
        self.key = key


class BulkPartialFailure(LayottoError):
    """Some items of a bulk write failed; the others were applied."""

    reason = "BULK_PARTIAL_FAILURE"

    def __init__(self, failures: Mapping[str, LayottoError]) -> None:
        parts = "; ".join(f.message for f in failures.values())
        super().__init__(
            f"{len(failures)} item(s) failed, the others were applied: {parts}",
            # whole keys only: a long list is cut to the first keys that fit (the message has the count)
            metadata={"failed_keys": _joined_within(list(failures), MAX_METADATA_VALUE_BYTES)},
        )
        self.failures = dict(failures)


class SecretNotFound(LayottoError):
    """The secret store has no secret of that name."""

    reason = "SECRET_NOT_FOUND"

    def __init__(self, store: str, name: str) -> None:
        super().__init__(f"key: secret store {store!r} has no secret {name!r}", metadata={"field": "key"})


class SecretAccessDenied(LayottoError):
    """The secret store's scope does not allow reading that secret."""

    reason = "SECRET_ACCESS_DENIED"

    def __init__(self, store: str, name: str) -> None:
        super().__init__(
            f"key: secret {name!r} of secret store {store!r} is not allowed by its secret scope",
            metadata={"field": "key"},
        )


class KeyNotFound(LayottoError):
    """The key store has no key of that name (or version); ``field`` names the request field."""

    reason = "KEY_NOT_FOUND"

    def __init__(self, field: str, component: str, key: str) -> None:
        super().__init__(f"{field}: key store {component!r} has no key {key!r}", metadata={"field": field, "key": key})


class FileNotFound(LayottoError):
    """The file store has no file ``name``; ``field`` names the request field holding it."""

    reason = "FILE_NOT_FOUND"

    def __init__(self, field: str, store: str, name: str) -> None:
        super().__init__(f"{field}: file store {store!r} has no file {name!r}", metadata={"field": field, "file": name})


class ObjectNotFound(LayottoError):
    """The object store has no bucket, object, version or multipart upload of that name; ``field``
    names the request field holding it, ``what`` says which ("bucket", "object", ...) and ``within``
    where it was looked for ("in bucket 'b'", "of 'key'"; empty: the store itself): the message
    reads ``key: object store 's' has no object 'k' in bucket 'b'``."""

    reason = "OBJECT_NOT_FOUND"

    def __init__(self, field: str, store: str, what: str, name: str, within: str = "") -> None:
        super().__init__(
            f"{field}: object store {store!r} has no {what} {name!r}{' ' + within if within else ''}",
            metadata={"field": field, "name": name},
        )


class DecryptionFailed(LayottoError):
    """The ciphertext does not verify (tampered, truncated, or sealed with another key): no plaintext
    is returned; ``field`` names the request field holding the ciphertext."""

    reason = "DECRYPTION_FAILED"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", metadata={"field": field})


class DeliveryRefused(LayottoError):
    """The mail server or message gateway behind ``component`` refused the message for good (an SMTP
    5xx reply, an HTTP 4xx answer); ``answer`` is what it said. Retrying the same message will not help."""

    reason = "DELIVERY_REFUSED"

    def __init__(self, component: str, answer: str) -> None:
        super().__init__(
            f"component {component!r}: the message was refused: {answer}", metadata={"component": component}
        )


class PayloadTooLarge(LayottoError):
    """A request field is over a size limit (``size`` and ``limit`` in bytes)."""

    reason = "PAYLOAD_TOO_LARGE"

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(f"{field}: {size} bytes is over the {limit}-byte limit", metadata={"field": field})


class ResponseTooLarge(PayloadTooLarge):
    """The answer to a call would be over the runtime's message limit; ``field`` names the part of
    the response that takes the most room (``items``)."""

    def __init__(self, field: str, size: int, limit: int) -> None:
        LayottoError.__init__(
            self,
            f"{field}: the response would be {size} bytes, over the {limit}-byte message limit "
            "(max_message_bytes); ask for less at a time",
            metadata={"field": field},
        )


class BackendUnavailable(LayottoError):
    """The component's backend cannot be reached (the runtime itself is up)."""

    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, component: str, detail: str) -> None:
        super().__init__(f"component {component!r} is unavailable: {detail}", metadata={"component": component})


class BackendError(LayottoError):
    """The component's backend answered with an error."""

    reason = "BACKEND_ERROR"

    def __init__(self, component: str, detail: str) -> None:
        super().__init__(f"component {component!r} failed: {detail}", metadata={"component": component})


class NotImplementedRpc(LayottoError):
    """The RPC (``method``: ``package.Service/Rpc``) is not served by this runtime yet."""

    reason = "RPC_NOT_IMPLEMENTED"

    def __init__(self, method: str) -> None:
        super().__init__(f"{method} is not implemented by this runtime yet", metadata={"method": method})


class MalformedRequest(LayottoError):
    """The bytes of a request (or of one message of a request stream) are not the RPC's message."""

    reason = "MALFORMED_REQUEST"

    def __init__(self, message_type: str, detail: str) -> None:
        super().__init__(
            f"request: the bytes are not a valid {message_type} ({detail})",
            metadata={"field": "request", "message_type": message_type},
        )


class RuntimeShuttingDown(LayottoError):
    """The runtime is stopping and did not start the call: the client should retry."""

    reason = "RUNTIME_SHUTTING_DOWN"

    def __init__(self, method: str) -> None:
        super().__init__(
            f"{method}: the runtime is shutting down and did not start this call; retry",
            metadata={"method": method},
        )


class Unauthenticated(LayottoError):
    """The call lacks the runtime's API token (``dapr-api-token``), or carries another one."""

    reason = "UNAUTHENTICATED"

    def __init__(self, method: str, detail: str) -> None:
        super().__init__(f"{method}: {detail}", metadata={"method": method})


class AppNotFound(LayottoError):
    """Service invocation: name resolution knows no instance of the target app id."""

    reason = "APP_NOT_FOUND"

    def __init__(self, app_id: str, detail: str = "no instance of it is known to name resolution") -> None:
        super().__init__(f"id: app {app_id!r}: {detail}", metadata={"field": "id", "app_id": app_id})


class AppUnavailable(LayottoError):
    """Service invocation: the target app, or every sidecar serving it, cannot be reached."""

    reason = "APP_UNAVAILABLE"

    def __init__(self, app_id: str, detail: str) -> None:
        super().__init__(f"app {app_id!r} is unavailable: {detail}", metadata={"app_id": app_id})


class JobNotFound(LayottoError):
    """Jobs: the app has no job of that name."""

    reason = "JOB_NOT_FOUND"

    def __init__(self, field: str, name: str) -> None:
        super().__init__(f"{field}: no job named {name!r}", metadata={"field": field, "name": name})


class JobAlreadyExists(LayottoError):
    """Jobs: a job of that name exists and the request did not ask to overwrite it."""

    reason = "JOB_ALREADY_EXISTS"

    def __init__(self, field: str, name: str) -> None:
        super().__init__(
            f"{field}: a job named {name!r} already exists (set overwrite to replace it)",
            metadata={"field": field, "name": name},
        )


class DeadlineExceeded(LayottoError):
    """The call's deadline passed before ``what`` answered."""

    reason = "DEADLINE_EXCEEDED"

    def __init__(self, what: str) -> None:
        super().__init__(f"the deadline passed before {what} answered")


class CircuitOpen(LayottoError):
    """Resiliency: the circuit breaker of ``target`` (an app id or a component) is open after
    failures (or half-open with its trial calls under way) and refuses the call."""

    reason = "CIRCUIT_OPEN"

    def __init__(self, target: str, breaker: str, detail: str) -> None:
        super().__init__(
            f"{target}: circuit breaker {breaker!r} is {detail}", metadata={"target": target, "breaker": breaker}
        )


class PassedOnError(LayottoError):
    """An error that keeps the status it came with: ``status`` is a gRPC status code name
    (``"NOT_FOUND"``), which the API layer sends instead of its reason's."""

    def __init__(self, message: str, *, status: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.status = status


#: the status code name of an HTTP app's error status, as Dapr maps it (others: UNKNOWN)
_STATUS_OF_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class AccessDenied(LayottoError):
    """Service invocation: the callee's access control refuses the caller (or its hop is not trusted)."""

    reason = "ACCESS_DENIED"

    def __init__(self, caller_app_id: str, operation: str, why: str) -> None:
        super().__init__(
            f"app {caller_app_id or '(unknown)'!r} may not call {operation}: {why}",
            metadata={"caller_app_id": caller_app_id, "operation": operation},
        )


class RateLimited(LayottoError):
    """Flow control: calls of ``resource`` are over their rate; ``retry_after`` is the seconds
    until the next call would be let through (metadata ``retry_after_seconds``)."""

    reason = "RATE_LIMITED"

    def __init__(self, resource: str, threshold: int, interval_ms: int, retry_after: float) -> None:
        super().__init__(
            f"{resource}: over its rate limit of {threshold} per {interval_ms} ms; retry after {retry_after:.3f} s",
            metadata={"resource": resource, "retry_after_seconds": f"{retry_after:.3f}"},
        )
        self.retry_after = retry_after


class AppError(PassedOnError):
    """Service invocation: the target app answered with an error; ``status`` is the app's own
    (a gRPC app's status code name, or an HTTP app's status mapped by ``_STATUS_OF_HTTP``)."""

    reason = "APP_ERROR"

    def __init__(self, app_id: str, detail: str, *, status: str = "UNKNOWN", http_status: int = 0) -> None:
        metadata = {"app_id": app_id}
        if http_status:
            metadata["http_status"] = str(http_status)
        super().__init__(f"app {app_id!r} answered with an error: {detail}", status=status, metadata=metadata)

    @classmethod
    def from_http(cls, app_id: str, http_status: int, body: bytes) -> AppError:
        text = body[:200].decode("utf-8", errors="replace")
        status = _STATUS_OF_HTTP.get(http_status, "UNKNOWN")
        return cls(app_id, f"HTTP {http_status}: {text}", status=status, http_status=http_status)


class RelayedError(PassedOnError):
    """An error another runtime reported, passed on as it came (status, reason, message, metadata)."""

    def __init__(self, status: str, reason: str, message: str, metadata: Mapping[str, str]) -> None:
        super().__init__(message, status=status, metadata=metadata)
        self.reason = reason  # type: ignore[misc]  # this instance's reason is the other runtime's
