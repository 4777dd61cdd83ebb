"""SMS and phone call semantics shared by the wire APIs: requests checked, the component asked.

A phone number is 3 to 32 characters of digits with an optional leading ``+`` and the separators
space, ``-``, ``(`` and ``)``; a request names at most :data:`MAX_NUMBERS` numbers. A template id
is required. Every request gets a fresh request id, which the provider may replace by its own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence

from layotto.server.components.loader import ComponentSet
from layotto.server.components.notify import PhoneComponent, SmsComponent, SmsRequest, SmsResult, VoiceRequest
from layotto.server.errors import InvalidArgument

MAX_NUMBERS = 1000
_PHONE_NUMBER = re.compile(r"\+?[0-9][0-9 ()-]{1,30}[0-9]")


def check_numbers(numbers: Sequence[str], field: str) -> tuple[str, ...]:
    if not numbers:
        raise InvalidArgument(field, "required: at least one phone number")
    if len(numbers) > MAX_NUMBERS:
        raise InvalidArgument(field, f"{len(numbers)} numbers is over the limit of {MAX_NUMBERS}")
    for i, number in enumerate(numbers):
        check_number(number, f"{field}[{i}]")
    return tuple(numbers)


def check_number(number: str, field: str) -> str:
    if not _PHONE_NUMBER.fullmatch(number):
        raise InvalidArgument(field, f"{number[:40]!r} is not a phone number")
    return number


class Notifier:
    """Layotto's SmsService and PhoneCallService over the configured components."""

    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    async def send_sms(
        self,
        component_name: str,
        phone_numbers: Sequence[str],
        template_id: str,
        template_params: Mapping[str, str],
        *,
        sign_name: str = "",
        sender_id: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> SmsResult:
        component = self._components.find("sms", component_name, "component_name")
        assert isinstance(component, SmsComponent)  # the sms registry only holds SMS components
        if not template_id:
            raise InvalidArgument("template.template_id", "is empty")
        request = SmsRequest(
            request_id=uuid.uuid4().hex,
            phone_numbers=check_numbers(phone_numbers, "phone_numbers"),
            template_id=template_id,
            template_params=dict(template_params),
            sign_name=sign_name,
            sender_id=sender_id,
            metadata=dict(metadata or {}),
        )
        return await component.send_sms(request)

    async def send_voice(
        self,
        component_name: str,
        to_mobile: Sequence[str],
        template_id: str,
        template_params: Mapping[str, str],
        from_mobile: str = "",
    ) -> str:
        component = self._components.find("phone", component_name, "component_name")
        assert isinstance(component, PhoneComponent)  # the phone registry only holds phone components
        if not template_id:
            raise InvalidArgument("template.template_id", "is empty")
        if from_mobile:
            check_number(from_mobile, "from_mobile")
        request = VoiceRequest(
            request_id=uuid.uuid4().hex,
            to_mobile=check_numbers(to_mobile, "to_mobile"),
            template_id=template_id,
            template_params=dict(template_params),
            from_mobile=from_mobile,
        )
        return await component.send_voice(request)
