"""Dapr's ``bindings.smtp`` output binding: ``create`` sends the request's data as an HTML mail,
through the same sending code as the ``smtp`` email component.

Request metadata (each overrides the component's metadata of that name): ``emailFrom``,
``emailTo``, ``emailCC``, ``emailBCC`` (addresses separated by ``;``, as Dapr splits them),
``subject``, ``priority`` (1 .. 5, sent as X-Priority; Dapr's default 3). A bad address is an
InvalidArgument naming ``metadata.<key>``; the server's refusal is DeliveryRefused, an
unreachable server BackendUnavailable.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, MetadataField
from layotto.server.components.bindings import BindingRequest, BindingResponse, OutputBinding
from layotto.server.components.email import Mail
from layotto.server.components.email.smtp import SMTP_METADATA, SmtpSender
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.email import check_subject, parse_address

MESSAGE_KEYS = ("emailFrom", "emailTo", "emailCC", "emailBCC", "subject", "priority")


def _addresses(value: str, key: str) -> tuple[str, ...]:
    parts = [part.strip() for part in value.split(";") if part.strip()]
    return tuple(parse_address(part, f"metadata.{key}") for part in parts)


def _priority(value: str) -> int:
    if value.strip() not in {"1", "2", "3", "4", "5"}:
        raise InvalidArgument("metadata.priority", f"expected 1 .. 5, got {value[:20]!r}")
    return int(value)


class SmtpBinding(OutputBinding):
    spec = ComponentSpec(
        type="smtp",
        building_block="bindings",
        description="Sends the request's data as an HTML mail through an SMTP server (create), addresses, "
        "subject and priority from the component's or the request's metadata (Dapr's names).",
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=("create",),
        metadata=(
            *SMTP_METADATA,
            MetadataField("emailTo", "Default recipients, separated by ';'.", default=""),
            MetadataField("emailCC", "Default CC recipients, separated by ';'.", default=""),
            MetadataField("emailBCC", "Default BCC recipients, separated by ';'.", default=""),
            MetadataField("subject", "Default subject.", default=""),
            MetadataField("priority", "Default X-Priority, 1 .. 5.", type=int, default=3, minimum=1, maximum=5),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._sender: SmtpSender | None = None
        self._defaults: dict[str, str] = {}

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._sender = SmtpSender(self.name, metadata, f"bindings.{self.name}.metadata")
        self._defaults = {key: str(metadata[key]) for key in MESSAGE_KEYS}

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        assert self._sender is not None  # set by init
        values = {**self._defaults, **{k: v for k, v in request.metadata.items() if k in MESSAGE_KEYS}}
        if not values["emailFrom"]:
            raise InvalidArgument(
                "metadata.emailFrom", "required: neither the request nor the component names a sender"
            )
        to = _addresses(values["emailTo"], "emailTo")
        if not to:
            raise InvalidArgument("metadata.emailTo", "required: neither the request nor the component names one")
        try:
            html = request.data.decode()
        except UnicodeDecodeError:
            raise InvalidArgument("data", "the mail body must be UTF-8 text") from None
        mail = Mail(
            sender=parse_address(values["emailFrom"], "metadata.emailFrom"),
            to=to,
            cc=_addresses(values["emailCC"], "emailCC"),
            bcc=_addresses(values["emailBCC"], "emailBCC"),
            subject=check_subject(values["subject"], "metadata.subject"),
            html=html,
            priority=_priority(values["priority"]),
        )
        message_id = uuid.uuid4().hex
        await self._sender.send(mail, message_id)
        return BindingResponse(metadata={"messageId": f"<{message_id}@layotto>"})
