"""Layotto's ``DelayQueue`` service: PublishDelayMessage (see runtime/scheduler.py)."""

from __future__ import annotations

from layotto.proto.extension.v1.delay_queue import delay_queue_pb2 as pb
from layotto.server.api.adapter import Context
from layotto.server.runtime.scheduler import DelayQueueService


class DelayQueueApi:
    def __init__(self, service: DelayQueueService) -> None:
        self._service = service

    async def PublishDelayMessage(self, request: pb.DelayMessageRequest, context: Context) -> pb.DelayMessageResponse:
        message_id = await self._service.publish_delayed(
            request.component_name,
            request.topic,
            request.data,
            content_type=request.data_content_type,
            delay_seconds=request.delay_in_seconds,
            metadata=dict(request.metadata),
        )
        return pb.DelayMessageResponse(message_id=message_id)
