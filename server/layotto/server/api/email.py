"""Layotto's ``EmailService`` (SendEmail, SendEmailWithTemplate): messages in, the runtime layer's
:class:`~layotto.server.runtime.email.EmailSender` does the rest."""

from __future__ import annotations

from layotto.proto.extension.v1.email import email_pb2
from layotto.server.api.adapter import Context
from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.email import Addresses, EmailSender


def _addresses(address: email_pb2.EmailAddress) -> Addresses:
    return Addresses(sender=getattr(address, "from"), to=list(address.to), cc=list(address.cc))


class EmailApi:
    def __init__(self, components: ComponentSet) -> None:
        self._sender = EmailSender(components)

    async def SendEmail(self, request: email_pb2.SendEmailRequest, context: Context) -> email_pb2.SendEmailResponse:
        request_id = await self._sender.send_text(
            request.component_name, request.subject, request.content.text, _addresses(request.address)
        )
        return email_pb2.SendEmailResponse(request_id=request_id)

    async def SendEmailWithTemplate(
        self, request: email_pb2.SendEmailWithTemplateRequest, context: Context
    ) -> email_pb2.SendEmailWithTemplateResponse:
        request_id = await self._sender.send_template(
            request.component_name,
            request.template.template_id,
            dict(request.template.template_params),
            request.subject,
            _addresses(request.address),
        )
        return email_pb2.SendEmailWithTemplateResponse(request_id=request_id)
