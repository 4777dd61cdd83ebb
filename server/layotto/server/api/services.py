"""The gRPC services the runtime serves, and the routing table of each.

A routing table binds RPC names to handlers explicitly: ``grep -rn SaveState server/`` lands
on the handler (``StateApi.SaveState``) and on one line per service serving it here. One
API class serves a building block on both wire APIs (Layotto's ``Runtime`` and Dapr's
``Dapr``), parameterised by that API's message classes. The tables are checked against the
service descriptors when the handlers are built (at start-up, and in a test): an entry
naming no RPC of its service is refused.

The runtime serves every service of the contract it is the server of
(:data:`SERVED_SERVICES`); an RPC without a table entry answers UNIMPLEMENTED naming it. The
contract's other services are served by applications, pluggable components or trace
collectors (:data:`NOT_SERVED`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor as _d

from layotto.proto.dapr.common.v1 import common_pb2 as dapr_common_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_appcallback_pb2
from layotto.proto.dapr.runtime.v1 import binding_pb2 as dapr_binding_pb2
from layotto.proto.dapr.runtime.v1 import dapr_pb2, secret_pb2, state_pb2
from layotto.proto.dapr.runtime.v1 import pubsub_pb2 as dapr_pubsub_pb2
from layotto.proto.extension.v1.cryption import cryption_pb2
from layotto.proto.extension.v1.delay_queue import delay_queue_pb2
from layotto.proto.extension.v1.email import email_pb2
from layotto.proto.extension.v1.phone import phone_pb2
from layotto.proto.extension.v1.s3 import oss_pb2
from layotto.proto.extension.v1.sms import sms_pb2
from layotto.proto.runtime.v1 import appcallback_pb2, lifecycle_pb2, runtime_pb2
from layotto.server.api.adapter import MethodHandlers, Routes, method_handlers
from layotto.server.api.bindings import BindingsApi
from layotto.server.api.configuration import DaprConfigurationApi, LayottoConfigurationApi
from layotto.server.api.cryption import CryptionApi
from layotto.server.api.delay_queue import DelayQueueApi
from layotto.server.api.email import EmailApi
from layotto.server.api.files import FilesApi
from layotto.server.api.hello import HelloApi
from layotto.server.api.invoke import InvokeApi
from layotto.server.api.jobs import JobsApi
from layotto.server.api.lifecycle import LifecycleApi
from layotto.server.api.lock import LockApi
from layotto.server.api.metadata import MetadataApi
from layotto.server.api.notify import NotifyApi
from layotto.server.api.oss import ObjectsApi
from layotto.server.api.pubsub import PubSubApi, PubSubMessages
from layotto.server.api.secrets import SecretMessages, SecretsApi
from layotto.server.api.sequencer import SequencerApi
from layotto.server.api.state import StateApi, StateMessages
from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.delivery import Topics
from layotto.server.runtime.invocation import Invoker
from layotto.server.runtime.reconfigure import Reconfigurer
from layotto.server.runtime.secret_scopes import SecretPolicy
from layotto.server.runtime.services import RuntimeServices, build_services

LAYOTTO_STATE = StateMessages(
    get_state_response=runtime_pb2.GetStateResponse,
    get_bulk_state_response=runtime_pb2.GetBulkStateResponse,
    bulk_state_item=runtime_pb2.BulkStateItem,
)
DAPR_STATE = StateMessages(
    get_state_response=state_pb2.GetStateResponse,
    get_bulk_state_response=state_pb2.GetBulkStateResponse,
    bulk_state_item=state_pb2.BulkStateItem,
    query_state_response=state_pb2.QueryStateResponse,
    query_state_item=state_pb2.QueryStateItem,
)

LAYOTTO_PUBSUB = PubSubMessages(
    topic_event_request=appcallback_pb2.TopicEventRequest,
    stream_response=runtime_pb2.SubscribeTopicEventsResponse,
    initial_response=runtime_pb2.SubscribeTopicEventsResponseInitial,
    has_metadata=True,
)
DAPR_PUBSUB = PubSubMessages(
    topic_event_request=dapr_appcallback_pb2.TopicEventRequest,
    stream_response=dapr_pubsub_pb2.SubscribeTopicEventsResponseAlpha1,
    initial_response=dapr_pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1,
    has_metadata=False,
)

LAYOTTO_SECRETS = SecretMessages(
    get_secret_response=runtime_pb2.GetSecretResponse,
    get_bulk_secret_response=runtime_pb2.GetBulkSecretResponse,
    secret_response=runtime_pb2.SecretResponse,
)
DAPR_SECRETS = SecretMessages(
    get_secret_response=secret_pb2.GetSecretResponse,
    get_bulk_secret_response=secret_pb2.GetBulkSecretResponse,
    secret_response=secret_pb2.SecretResponse,
)

RUNTIME_SERVICE = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"]
DAPR_SERVICE = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
CRYPTION_SERVICE = cryption_pb2.DESCRIPTOR.services_by_name["CryptionService"]
DELAY_QUEUE_SERVICE = delay_queue_pb2.DESCRIPTOR.services_by_name["DelayQueue"]
LIFECYCLE_SERVICE = lifecycle_pb2.DESCRIPTOR.services_by_name["Lifecycle"]
EMAIL_SERVICE = email_pb2.DESCRIPTOR.services_by_name["EmailService"]
SMS_SERVICE = sms_pb2.DESCRIPTOR.services_by_name["SmsService"]
PHONE_SERVICE = phone_pb2.DESCRIPTOR.services_by_name["PhoneCallService"]
OSS_SERVICE = oss_pb2.DESCRIPTOR.services_by_name["ObjectStorageService"]
#: runtime-side services no building block implements yet: every RPC answers UNIMPLEMENTED
UNBUILT_SERVICES: tuple[_d.ServiceDescriptor, ...] = ()
SERVED_SERVICES: tuple[_d.ServiceDescriptor, ...] = (
    RUNTIME_SERVICE,
    DAPR_SERVICE,
    CRYPTION_SERVICE,
    DELAY_QUEUE_SERVICE,
    LIFECYCLE_SERVICE,
    EMAIL_SERVICE,
    SMS_SERVICE,
    PHONE_SERVICE,
    OSS_SERVICE,
    *UNBUILT_SERVICES,
)
SERVICE_NAMES = tuple(service.full_name for service in SERVED_SERVICES)
#: the contract's services a runtime is a client of, never the server
NOT_SERVED = frozenset(
    {
        "spec.proto.runtime.v1.AppCallback",  # the app's
        "dapr.proto.runtime.v1.AppCallback",
        "dapr.proto.runtime.v1.AppCallbackAlpha",
        "dapr.proto.runtime.v1.AppCallbackHealthCheck",
        "spec.proto.pluggable.v1.hello.Hello",  # a pluggable component's
        "skywalking.v3.TraceSegmentReportService",  # a trace collector's
        # a Dapr pluggable component's (the runtime is its client: components/pluggable)
        "dapr.proto.components.v1.InputBinding",
        "dapr.proto.components.v1.OutputBinding",
        "dapr.proto.components.v1.PubSub",
        "dapr.proto.components.v1.QueriableStateStore",
        "dapr.proto.components.v1.StateStore",
        "dapr.proto.components.v1.TransactionalStateStore",
        "dapr.proto.components.v1.TransactionalStoreMultiMaxSize",
    }
)


@dataclass(frozen=True)
class Apis:
    """The building-block API objects of one runtime, each serving its block's RPCs."""

    layotto_state: StateApi
    dapr_state: StateApi
    hello: HelloApi
    lock: LockApi
    sequencer: SequencerApi
    layotto_pubsub: PubSubApi
    dapr_pubsub: PubSubApi
    layotto_secrets: SecretsApi
    dapr_secrets: SecretsApi
    layotto_configuration: LayottoConfigurationApi
    dapr_configuration: DaprConfigurationApi
    metadata: MetadataApi
    cryption: CryptionApi
    layotto_bindings: BindingsApi
    dapr_bindings: BindingsApi
    delay_queue: DelayQueueApi
    jobs: JobsApi
    email: EmailApi
    notify: NotifyApi
    files: FilesApi
    objects: ObjectsApi
    layotto_invoke: InvokeApi | None = None  # None: InvokeService answers UNIMPLEMENTED
    dapr_invoke: InvokeApi | None = None
    lifecycle: LifecycleApi | None = None  # None: ApplyConfiguration answers UNIMPLEMENTED


def runtime_routes(apis: Apis) -> Routes:
    """Layotto's ``spec.proto.runtime.v1.Runtime``: RPC name -> handler."""
    return {
        "SayHello": apis.hello.SayHello,
        "GetConfiguration": apis.layotto_configuration.GetConfiguration,
        "SaveConfiguration": apis.layotto_configuration.SaveConfiguration,
        "DeleteConfiguration": apis.layotto_configuration.DeleteConfiguration,
        "SubscribeConfiguration": apis.layotto_configuration.SubscribeConfiguration,
        "TryLock": apis.lock.TryLock,
        "Unlock": apis.lock.Unlock,
        "LockKeepAlive": apis.lock.LockKeepAlive,
        "GetNextId": apis.sequencer.GetNextId,
        "GetState": apis.layotto_state.GetState,
        "GetBulkState": apis.layotto_state.GetBulkState,
        "SaveState": apis.layotto_state.SaveState,
        "DeleteState": apis.layotto_state.DeleteState,
        "DeleteBulkState": apis.layotto_state.DeleteBulkState,
        "ExecuteStateTransaction": apis.layotto_state.ExecuteStateTransaction,
        "PublishEvent": apis.layotto_pubsub.PublishEvent,
        "SubscribeTopicEvents": apis.layotto_pubsub.SubscribeTopicEvents,
        "GetSecret": apis.layotto_secrets.GetSecret,
        "GetBulkSecret": apis.layotto_secrets.GetBulkSecret,
        **({"InvokeService": apis.layotto_invoke.InvokeService} if apis.layotto_invoke else {}),
        "InvokeBinding": apis.layotto_bindings.InvokeBinding,
        "PutFile": apis.files.PutFile,
        "GetFile": apis.files.GetFile,
        "ListFile": apis.files.ListFile,
        "GetFileMeta": apis.files.GetFileMeta,
        "DelFile": apis.files.DelFile,
    }


def dapr_routes(apis: Apis) -> Routes:
    """Dapr's ``dapr.proto.runtime.v1.Dapr``: RPC name -> handler (an Alpha1 name and its stable
    name share one handler)."""
    return {
        "GetState": apis.dapr_state.GetState,
        "GetBulkState": apis.dapr_state.GetBulkState,
        "SaveState": apis.dapr_state.SaveState,
        "DeleteState": apis.dapr_state.DeleteState,
        "DeleteBulkState": apis.dapr_state.DeleteBulkState,
        "ExecuteStateTransaction": apis.dapr_state.ExecuteStateTransaction,
        "QueryStateAlpha1": apis.dapr_state.QueryStateAlpha1,
        "PublishEvent": apis.dapr_pubsub.PublishEvent,
        "BulkPublishEvent": apis.dapr_pubsub.BulkPublishEvent,
        "BulkPublishEventAlpha1": apis.dapr_pubsub.BulkPublishEvent,
        "SubscribeTopicEventsAlpha1": apis.dapr_pubsub.SubscribeTopicEvents,
        "GetSecret": apis.dapr_secrets.GetSecret,
        "GetBulkSecret": apis.dapr_secrets.GetBulkSecret,
        "GetConfiguration": apis.dapr_configuration.GetConfiguration,
        "GetConfigurationAlpha1": apis.dapr_configuration.GetConfiguration,
        "SubscribeConfiguration": apis.dapr_configuration.SubscribeConfiguration,
        "SubscribeConfigurationAlpha1": apis.dapr_configuration.SubscribeConfiguration,
        "UnsubscribeConfiguration": apis.dapr_configuration.UnsubscribeConfiguration,
        "UnsubscribeConfigurationAlpha1": apis.dapr_configuration.UnsubscribeConfiguration,
        "TryLockAlpha1": apis.lock.TryLockAlpha1,
        "UnlockAlpha1": apis.lock.UnlockAlpha1,
        "GetMetadata": apis.metadata.GetMetadata,
        "SetMetadata": apis.metadata.SetMetadata,
        "Shutdown": apis.metadata.Shutdown,
        "EncryptAlpha1": apis.cryption.EncryptAlpha1,
        "DecryptAlpha1": apis.cryption.DecryptAlpha1,
        "SubtleGetKeyAlpha1": apis.cryption.SubtleGetKeyAlpha1,
        "SubtleEncryptAlpha1": apis.cryption.SubtleEncryptAlpha1,
        "SubtleDecryptAlpha1": apis.cryption.SubtleDecryptAlpha1,
        "SubtleWrapKeyAlpha1": apis.cryption.SubtleWrapKeyAlpha1,
        "SubtleUnwrapKeyAlpha1": apis.cryption.SubtleUnwrapKeyAlpha1,
        "SubtleSignAlpha1": apis.cryption.SubtleSignAlpha1,
        "SubtleVerifyAlpha1": apis.cryption.SubtleVerifyAlpha1,
        **({"InvokeService": apis.dapr_invoke.InvokeService} if apis.dapr_invoke else {}),
        "InvokeBinding": apis.dapr_bindings.InvokeBinding,
        "ScheduleJob": apis.jobs.ScheduleJob,
        "ScheduleJobAlpha1": apis.jobs.ScheduleJob,
        "GetJob": apis.jobs.GetJob,
        "GetJobAlpha1": apis.jobs.GetJob,
        "DeleteJob": apis.jobs.DeleteJob,
        "DeleteJobAlpha1": apis.jobs.DeleteJob,
        "DeleteJobsByPrefix": apis.jobs.DeleteJobsByPrefix,
        "DeleteJobsByPrefixAlpha1": apis.jobs.DeleteJobsByPrefixAlpha1,
        "ListJobs": apis.jobs.ListJobs,
        "ListJobsAlpha1": apis.jobs.ListJobsAlpha1,
    }


def cryption_routes(apis: Apis) -> Routes:
    """Layotto's ``spec.proto.extension.v1.cryption.CryptionService``."""
    return {"Encrypt": apis.cryption.Encrypt, "Decrypt": apis.cryption.Decrypt}


def oss_routes(apis: Apis) -> Routes:
    """Layotto's ``spec.proto.extension.v1.s3.ObjectStorageService``."""
    objects = apis.objects
    return {
        "PutObject": objects.PutObject,
        "GetObject": objects.GetObject,
        "DeleteObject": objects.DeleteObject,
        "CopyObject": objects.CopyObject,
        "DeleteObjects": objects.DeleteObjects,
        "ListObjects": objects.ListObjects,
        "HeadObject": objects.HeadObject,
        "IsObjectExist": objects.IsObjectExist,
        "PutObjectTagging": objects.PutObjectTagging,
        "DeleteObjectTagging": objects.DeleteObjectTagging,
        "GetObjectTagging": objects.GetObjectTagging,
        "GetObjectCannedAcl": objects.GetObjectCannedAcl,
        "PutObjectCannedAcl": objects.PutObjectCannedAcl,
        "CreateMultipartUpload": objects.CreateMultipartUpload,
        "UploadPart": objects.UploadPart,
        "UploadPartCopy": objects.UploadPartCopy,
        "CompleteMultipartUpload": objects.CompleteMultipartUpload,
        "AbortMultipartUpload": objects.AbortMultipartUpload,
        "ListMultipartUploads": objects.ListMultipartUploads,
        "ListParts": objects.ListParts,
        "ListObjectVersions": objects.ListObjectVersions,
        "SignURL": objects.SignURL,
        "UpdateDownloadBandwidthRateLimit": objects.UpdateDownloadBandwidthRateLimit,
        "UpdateUploadBandwidthRateLimit": objects.UpdateUploadBandwidthRateLimit,
        "AppendObject": objects.AppendObject,
        "RestoreObject": objects.RestoreObject,
    }


def routing_tables(apis: Apis) -> dict[_d.ServiceDescriptor, Routes]:
    """Every served service -> its routing table (empty for the services not built yet)."""
    tables: dict[_d.ServiceDescriptor, Routes] = {
        RUNTIME_SERVICE: runtime_routes(apis),
        DAPR_SERVICE: dapr_routes(apis),
        CRYPTION_SERVICE: cryption_routes(apis),
        DELAY_QUEUE_SERVICE: {"PublishDelayMessage": apis.delay_queue.PublishDelayMessage},
        LIFECYCLE_SERVICE: {"ApplyConfiguration": apis.lifecycle.ApplyConfiguration} if apis.lifecycle else {},
        EMAIL_SERVICE: {
            "SendEmail": apis.email.SendEmail,
            "SendEmailWithTemplate": apis.email.SendEmailWithTemplate,
        },
        SMS_SERVICE: {"SendSmsWithTemplate": apis.notify.SendSmsWithTemplate},
        PHONE_SERVICE: {"SendVoiceWithTemplate": apis.notify.SendVoiceWithTemplate},
        OSS_SERVICE: oss_routes(apis),
    }
    for service in UNBUILT_SERVICES:
        tables[service] = {}
    return tables


def build_apis(
    services: RuntimeServices,
    components: ComponentSet,
    *,
    app_id: str,
    topics: Topics,
    invoker: Invoker | None = None,
    strip_trace: bool = False,
    reconfigurer: Reconfigurer | None = None,
) -> Apis:
    """``topics`` is shared: streams of both APIs and the app callback compete for one topic's messages."""
    return Apis(
        layotto_state=StateApi(services.state, LAYOTTO_STATE),
        dapr_state=StateApi(services.state, DAPR_STATE),
        hello=HelloApi(components),
        lock=LockApi(services.locks),
        sequencer=SequencerApi(components, app_id),
        layotto_pubsub=PubSubApi(services.publisher, app_id, LAYOTTO_PUBSUB, topics),
        dapr_pubsub=PubSubApi(services.publisher, app_id, DAPR_PUBSUB, topics),
        layotto_secrets=SecretsApi(services.secrets, LAYOTTO_SECRETS),
        dapr_secrets=SecretsApi(services.secrets, DAPR_SECRETS),
        layotto_configuration=LayottoConfigurationApi(services.configuration),
        dapr_configuration=DaprConfigurationApi(services.configuration),
        metadata=MetadataApi(services.metadata),
        cryption=CryptionApi(components),
        layotto_invoke=InvokeApi(invoker, runtime_pb2.InvokeResponse, strip_trace=strip_trace) if invoker else None,
        dapr_invoke=InvokeApi(invoker, dapr_common_pb2.InvokeResponse, strip_trace=strip_trace) if invoker else None,
        layotto_bindings=BindingsApi(components, runtime_pb2.InvokeBindingResponse),
        dapr_bindings=BindingsApi(components, dapr_binding_pb2.InvokeBindingResponse),
        delay_queue=DelayQueueApi(services.delay_queue),
        lifecycle=LifecycleApi(reconfigurer) if reconfigurer is not None else None,
        jobs=JobsApi(services.jobs),
        email=EmailApi(components),
        notify=NotifyApi(components),
        files=FilesApi(services.files),
        objects=ObjectsApi(services.objects),
    )


def api_handlers(
    components: ComponentSet,
    *,
    app_id: str,
    version: str,
    shutdown: Callable[[str], None],
    topics: Topics,
    max_publish_bytes: int,
    secret_policy: SecretPolicy,
    invoker: Invoker | None = None,
    strip_trace: bool = False,
    services: RuntimeServices | None = None,
    max_response_bytes: int | None = None,
    reconfigurer: Reconfigurer | None = None,
) -> dict[str, MethodHandlers]:
    """Service full name -> {RPC name -> gRPC method handler}, for every served service.

    ``services``: the runtime layer the handlers call (built from the other arguments when None;
    pass the runtime's own so the HTTP API shares it). ``max_response_bytes``: the largest response
    sent (the server's max send length; a larger one answers PAYLOAD_TOO_LARGE). ``reconfigurer``
    serves Lifecycle/ApplyConfiguration (None: UNIMPLEMENTED). Raises
    :class:`~layotto.server.api.adapter.RoutingError` when a table does not fit its service.
    """
    if services is None:
        services = build_services(
            components,
            app_id=app_id,
            version=version,
            shutdown=shutdown,
            max_publish_bytes=max_publish_bytes,
            secret_policy=secret_policy,
        )
    apis = build_apis(
        services,
        components,
        app_id=app_id,
        topics=topics,
        invoker=invoker,
        strip_trace=strip_trace,
        reconfigurer=reconfigurer,
    )
    return {
        service.full_name: method_handlers(service, routes, max_response_bytes)
        for service, routes in routing_tables(apis).items()
    }


def generic_handlers(services: Mapping[str, MethodHandlers]) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """One generic handler per service, for ``grpc.aio.Server.add_generic_rpc_handlers``."""
    return [grpc.method_handlers_generic_handler(name, handlers) for name, handlers in services.items()]
