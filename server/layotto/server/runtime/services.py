"""The runtime layer of one runtime: one service per building block, shared by the gRPC and
the HTTP front ends (so an attribute set over HTTP is read over gRPC, and so on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.configuration import ConfigurationService
from layotto.server.runtime.files import FileService
from layotto.server.runtime.jobs import JobService
from layotto.server.runtime.lock import LockService
from layotto.server.runtime.metadata import MetadataService
from layotto.server.runtime.oss import ObjectService
from layotto.server.runtime.publish import Publisher
from layotto.server.runtime.scheduler import DelayQueueService
from layotto.server.runtime.secret_scopes import SecretPolicy
from layotto.server.runtime.secrets import SecretService
from layotto.server.runtime.state import StateService


@dataclass(frozen=True)
class RuntimeServices:
    components: ComponentSet  # the output bindings are called through runtime.bindings.invoke_binding
    state: StateService
    publisher: Publisher
    secrets: SecretService
    locks: LockService
    configuration: ConfigurationService
    metadata: MetadataService
    delay_queue: DelayQueueService
    jobs: JobService
    files: FileService
    objects: ObjectService


def build_services(
    components: ComponentSet,
    *,
    app_id: str,
    version: str,
    shutdown: Callable[[str], None],
    max_publish_bytes: int,
    secret_policy: SecretPolicy,
) -> RuntimeServices:
    publisher = Publisher(components, app_id, max_publish_bytes)
    return RuntimeServices(
        components=components,
        state=StateService(components),
        publisher=publisher,
        secrets=SecretService(components, secret_policy),
        locks=LockService(components, app_id),
        configuration=ConfigurationService(components, app_id),
        metadata=MetadataService(app_id, version, components, shutdown),
        delay_queue=DelayQueueService(components, publisher),
        jobs=JobService(components, app_id, max_publish_bytes),
        files=FileService(components),
        objects=ObjectService(components),
    )
