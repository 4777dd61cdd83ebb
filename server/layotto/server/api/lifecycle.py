"""Layotto's ``spec.proto.runtime.v1.Lifecycle``: ApplyConfiguration changes one component's
metadata live (:mod:`layotto.server.runtime.reconfigure` builds, swaps and drains)."""

from __future__ import annotations

from layotto.proto.runtime.v1 import lifecycle_pb2
from layotto.server.api.adapter import Context
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.reconfigure import Reconfigurer


class LifecycleApi:
    def __init__(self, reconfigurer: Reconfigurer) -> None:
        self._reconfigurer = reconfigurer

    async def ApplyConfiguration(
        self, request: lifecycle_pb2.DynamicConfiguration, context: Context
    ) -> lifecycle_pb2.ApplyConfigurationResponse:
        """``component_config{kind, name, metadata}``: the metadata keys given replace the
        component's (the others are kept). INVALID_ARGUMENT naming the field for a missing field,
        an unknown kind or name, a change that needs a restart, or a new instance that failed to
        initialise (the old one keeps serving)."""
        if not request.HasField("component_config"):
            raise InvalidArgument("component_config", "required: {kind, name, metadata}")
        config = request.component_config
        for field_name in ("kind", "name"):
            if not getattr(config, field_name):
                raise InvalidArgument(f"component_config.{field_name}", "required, it is empty")
        await self._reconfigurer.apply_metadata(config.kind, config.name, dict(config.metadata))
        return lifecycle_pb2.ApplyConfigurationResponse()
