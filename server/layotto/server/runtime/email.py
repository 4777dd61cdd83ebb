"""Email semantics shared by the wire APIs: addresses and subjects checked, the message built, the
component asked; every bad field is an InvalidArgument naming it.

Limits: at most :data:`MAX_RECIPIENTS` recipients (to, cc and bcc together), a subject of at most
:data:`MAX_SUBJECT_CHARS` characters without line breaks, ASCII addresses (no SMTPUTF8) of at most
:data:`MAX_ADDRESS_CHARS` characters. ``setting_id`` of Layotto's SendEmail
(a cloud provider's sender setting) is not used by SMTP components.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import formataddr, getaddresses

from layotto.server.components.email import EmailComponent, Mail
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument

MAX_RECIPIENTS = 1000
MAX_SUBJECT_CHARS = 998  # RFC 5322's line limit
MAX_ADDRESS_CHARS = 254  # RFC 5321's longest forward-path, without its angle brackets


def _breaks_a_header(text: str) -> bool:
    """Whether ``text`` holds NUL or anything Python's email headers take as a line break (CR, LF,
    and also U+2028, U+2029, U+0085, VT, FF, FS, GS, RS: str.splitlines)."""
    return "\0" in text or len(f"{text}.".splitlines()) != 1


def parse_address(value: str, field: str) -> str:
    """``value`` (``user@host`` or ``Name <user@host>``) checked, as it goes into a header."""
    if _breaks_a_header(value):
        raise InvalidArgument(field, "an email address cannot contain line breaks or NUL")
    parsed = getaddresses([value])
    name, spec = parsed[0] if len(parsed) == 1 else ("", "")
    if spec and not spec.isascii():
        raise InvalidArgument(field, f"{spec[:200]!r}: internationalized (non-ASCII) addresses are not supported")
    try:
        if not spec or "@" not in spec:
            raise ValueError
        address = Address(addr_spec=spec)
        if not address.username or not address.domain:
            raise ValueError
    except (ValueError, HeaderParseError, IndexError):
        raise InvalidArgument(field, f"{value[:200]!r} is not an email address") from None
    if len(spec) > MAX_ADDRESS_CHARS:
        raise InvalidArgument(field, f"{len(spec)} characters is over the {MAX_ADDRESS_CHARS}-character limit")
    return formataddr((name, spec)) if name else spec


def parse_addresses(values: Sequence[str], field: str) -> tuple[str, ...]:
    return tuple(parse_address(value, f"{field}[{i}]") for i, value in enumerate(values))


def check_subject(subject: str, field: str = "subject") -> str:
    if _breaks_a_header(subject):
        raise InvalidArgument(field, "a subject cannot contain line breaks or NUL")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidArgument(field, f"{len(subject)} characters is over the {MAX_SUBJECT_CHARS}-character limit")
    return subject


@dataclass(frozen=True)
class Addresses:
    """The sender and recipients a request names (``field`` prefixes their names in errors)."""

    sender: str
    to: Sequence[str]
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    field: str = "address"


def checked_mail(
    addresses: Addresses,
    default_sender: str,
    subject: str,
    *,
    text: str | None = None,
    html: str | None = None,
    priority: int = 0,
    sender_field: str = "",
) -> Mail:
    """A :class:`Mail` of checked parts; the sender defaults to ``default_sender``."""
    prefix = addresses.field
    sender_field = sender_field or f"{prefix}.from"
    sender = addresses.sender or default_sender
    if not sender:
        raise InvalidArgument(sender_field, "required: the component has no default sender (emailFrom)")
    if not addresses.to:
        raise InvalidArgument(f"{prefix}.to", "required: at least one recipient")
    count = len(addresses.to) + len(addresses.cc) + len(addresses.bcc)
    if count > MAX_RECIPIENTS:
        raise InvalidArgument(f"{prefix}.to", f"{count} recipients is over the limit of {MAX_RECIPIENTS}")
    return Mail(
        sender=parse_address(sender, sender_field),
        to=parse_addresses(addresses.to, f"{prefix}.to"),
        cc=parse_addresses(addresses.cc, f"{prefix}.cc"),
        bcc=parse_addresses(addresses.bcc, f"{prefix}.bcc"),
        subject=check_subject(subject),
        text=text,
        html=html,
        priority=priority,
    )


class EmailSender:
    """Layotto's EmailService over the configured email components."""

    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    def _component(self, name: str) -> EmailComponent:
        component = self._components.find("email", name, "component_name")
        assert isinstance(component, EmailComponent)  # the email registry only holds email components
        return component

    async def send_text(self, component_name: str, subject: str, text: str, addresses: Addresses) -> str:
        """Send a plain-text mail; returns its request id (also the Message-ID's local part)."""
        component = self._component(component_name)
        mail = checked_mail(addresses, component.default_sender, subject, text=text)
        request_id = uuid.uuid4().hex
        await component.send(mail, request_id)
        return request_id

    async def send_template(
        self, component_name: str, template_id: str, params: Mapping[str, str], subject: str, addresses: Addresses
    ) -> str:
        """Render the component's template ``template_id`` with ``params`` and send it; returns the request id."""
        component = self._component(component_name)
        if not template_id:
            raise InvalidArgument("template.template_id", "is empty")
        checked_mail(addresses, component.default_sender, subject)  # addresses first: they are cheaper
        rendered = component.render(template_id, params)
        mail = checked_mail(addresses, component.default_sender, subject, text=rendered.text, html=rendered.html)
        request_id = uuid.uuid4().hex
        await component.send(mail, request_id)
        return request_id
