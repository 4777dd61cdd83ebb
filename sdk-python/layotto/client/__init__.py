"""Layotto for Python: the asyncio SDK.

``RuntimeClient`` is the entry point; the exception tree is documented in one place,
:mod:`layotto.client` (see ``LayottoError``); ``layotto.client.testing`` starts an
in-process runtime for application tests.
"""

from layotto.client._app import Handler, MethodHandler, SubscriberApp
from layotto.client._bindings import BindingEvent, BindingHandler, BindingReply, BindingResult, BindingsClient
from layotto.client._client import Hello, RuntimeClient
from layotto.client._configuration import ConfigurationClient, ConfigurationItem, ConfigurationWatch
from layotto.client._crypto import CryptoClient, CryptoResult
from layotto.client._errors import (
    AppError,
    AppNotFound,
    AppUnavailable,
    BackendError,
    BackendUnavailable,
    BulkWriteError,
    CircuitOpen,
    ClientClosed,
    DeadlineExceeded,
    DecryptionFailed,
    EtagInvalid,
    EtagMismatch,
    FeatureNotSupported,
    InvalidArgument,
    KeyNotFound,
    LayottoError,
    LockLost,
    LockNotAcquired,
    MalformedRequest,
    NoComponentsConfigured,
    NotFound,
    NotImplementedByRuntime,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RuntimeInternalError,
    RuntimeUnavailable,
    SecretNotFound,
    StoreNotFound,
    Unauthenticated,
)
from layotto.client._invoke import Invocation, InvokeResponse
from layotto.client._lock import Lease, LockClient, LockStatus, SequencerClient
from layotto.client._pubsub import Message, PubSubClient, ReceivedMessage, Subscription, TopicStatus
from layotto.client._retry import NO_RETRY, RetryPolicy
from layotto.client._secrets import SecretsClient
from layotto.client._state import Consistency, StateClient, StateDelete, StateItem, StateWrite
from layotto.client._tls import TlsConfig
from layotto.client._transport import DEFAULT_MAX_MESSAGE_BYTES, StreamCall, Transport

__all__ = [
    "TlsConfig",
    "AppError",
    "AppNotFound",
    "AppUnavailable",
    "Invocation",
    "InvokeResponse",
    "MethodHandler",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "StreamCall",
    "Transport",
    "BackendError",
    "BackendUnavailable",
    "BindingEvent",
    "BindingHandler",
    "BindingReply",
    "BindingResult",
    "BindingsClient",
    "ClientClosed",
    "MalformedRequest",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "NO_RETRY",
    "BulkWriteError",
    "CircuitOpen",
    "ConfigurationClient",
    "ConfigurationItem",
    "ConfigurationWatch",
    "Consistency",
    "CryptoClient",
    "CryptoResult",
    "DeadlineExceeded",
    "DecryptionFailed",
    "EtagInvalid",
    "EtagMismatch",
    "FeatureNotSupported",
    "Handler",
    "Hello",
    "InvalidArgument",
    "KeyNotFound",
    "LayottoError",
    "Lease",
    "LockClient",
    "LockLost",
    "LockNotAcquired",
    "LockStatus",
    "Message",
    "NoComponentsConfigured",
    "NotFound",
    "NotImplementedByRuntime",
    "PubSubClient",
    "ReceivedMessage",
    "RetryPolicy",
    "RuntimeClient",
    "RuntimeInternalError",
    "RuntimeUnavailable",
    "SecretNotFound",
    "SecretsClient",
    "SequencerClient",
    "StateClient",
    "StateDelete",
    "StateItem",
    "StateWrite",
    "StoreNotFound",
    "SubscriberApp",
    "Subscription",
    "TopicStatus",
    "Unauthenticated",
]
