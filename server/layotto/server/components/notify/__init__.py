"""The SMS and phone call building blocks (Layotto's ``SmsService`` and ``PhoneCallService``).

A component takes a checked request and answers what the provider said. Vendors' clouds are
providers added through entry points; this runtime ships a ``webhook`` provider for both
(:mod:`layotto.server.components.notify.webhook`). A third-party package adds one with::

    [project.entry-points."layotto.components.sms"]
    my-vendor = "my_package.sms:MyVendorSms"          # a SmsComponent

    [project.entry-points."layotto.components.phone"]
    my-vendor = "my_package.voice:MyVendorPhone"      # a PhoneComponent
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from layotto.server.components.base import Component


@dataclass(frozen=True)
class SmsRequest:
    """An SMS from a template: ``request_id`` identifies it (retries of it carry the same id)."""

    request_id: str
    phone_numbers: tuple[str, ...]
    template_id: str
    template_params: Mapping[str, str] = field(default_factory=dict)
    sign_name: str = ""
    sender_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendStatus:
    """The provider's answer about one message (its ``code``, ``message`` and details)."""

    code: str
    message: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmsResult:
    request_id: str
    results: tuple[SendStatus, ...] = ()


@dataclass(frozen=True)
class VoiceRequest:
    """A voice call from a template."""

    request_id: str
    to_mobile: tuple[str, ...]
    template_id: str
    template_params: Mapping[str, str] = field(default_factory=dict)
    from_mobile: str = ""


class SmsComponent(Component):
    @abstractmethod
    async def send_sms(self, request: SmsRequest) -> SmsResult:
        """Send the SMS; raises DeliveryRefused (the provider refused it) or BackendUnavailable."""


class PhoneComponent(Component):
    @abstractmethod
    async def send_voice(self, request: VoiceRequest) -> str:
        """Place the call; answers the provider's request id. Raises as :meth:`SmsComponent.send_sms`."""
