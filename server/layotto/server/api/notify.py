"""Layotto's ``SmsService`` (SendSmsWithTemplate) and ``PhoneCallService`` (SendVoiceWithTemplate)."""

from __future__ import annotations

from layotto.proto.extension.v1.phone import phone_pb2
from layotto.proto.extension.v1.sms import sms_pb2
from layotto.server.api.adapter import Context
from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.notify import Notifier


class NotifyApi:
    def __init__(self, components: ComponentSet) -> None:
        self._notifier = Notifier(components)

    async def SendSmsWithTemplate(
        self, request: sms_pb2.SendSmsWithTemplateRequest, context: Context
    ) -> sms_pb2.SendSmsWithTemplateResponse:
        result = await self._notifier.send_sms(
            request.component_name,
            list(request.phone_numbers),
            request.template.template_id,
            dict(request.template.template_params),
            sign_name=request.sign_name,
            sender_id=request.sender_id,
            metadata=dict(request.metadata),
        )
        return sms_pb2.SendSmsWithTemplateResponse(
            request_id=result.request_id,
            results=[
                sms_pb2.SendStatus(code=s.code, message=s.message, metadata=dict(s.metadata)) for s in result.results
            ],
        )

    async def SendVoiceWithTemplate(
        self, request: phone_pb2.SendVoiceWithTemplateRequest, context: Context
    ) -> phone_pb2.SendVoiceWithTemplateResponse:
        request_id = await self._notifier.send_voice(
            request.component_name,
            list(request.to_mobile),
            request.template.template_id,
            dict(request.template.template_params),
            request.from_mobile,
        )
        return phone_pb2.SendVoiceWithTemplateResponse(request_id=request_id)
