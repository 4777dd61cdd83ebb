"""Mail through an SMTP server (aiosmtplib), shared by the ``smtp`` email component and the ``smtp``
output binding.

Metadata keys are Dapr's ``bindings.smtp`` names where Dapr has them (host, port, user,
password, skipTLSVerify, emailFrom). ``encryption``: ``auto`` (STARTTLS when the server offers
it), ``starttls`` (required), ``tls`` (implicit TLS, usually port 465) or ``none``. The
certificate is verified against the system's CAs or ``caFile`` unless skipTLSVerify.

A message goes out all or nothing: every recipient is offered (RCPT) before the body, and one
refused recipient aborts the transaction (RSET) so nobody gets it. Errors: a 5xx reply ->
DeliveryRefused with the server's answer; a 4xx reply, a connection failure or a timeout ->
BackendUnavailable.
"""

from __future__ import annotations

import contextlib
import email.utils
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.email import EmailComponent, Mail, Rendered
from layotto.server.components.email.templates import TemplateDirectory
from layotto.server.errors import BackendUnavailable, DeliveryRefused, InvalidArgument

ENCRYPTIONS = ("auto", "starttls", "tls", "none")

SMTP_METADATA = (
    MetadataField("host", "The SMTP server's host name or IP address.", required=True, example="smtp.example.com"),
    MetadataField("port", "The SMTP server's port.", type=int, default=25, minimum=1, maximum=65535),
    MetadataField("user", "The login (AUTH), if the server wants one.", default=""),
    MetadataField("password", "The password of user.", default="", secret=True),
    MetadataField(
        "encryption",
        "auto (STARTTLS when the server offers it), starttls (required), tls (implicit TLS, port 465) or none.",
        default="auto",
    ),
    MetadataField("skipTLSVerify", "Accept any server certificate (tests only).", type=bool, default=False),
    MetadataField(
        "caFile", "PEM file of the CAs that verify the server's certificate (default: the system's).", default=""
    ),
    MetadataField("emailFrom", "The sender when a request names none.", default="", example="noreply@example.com"),
    MetadataField(
        "timeoutInSeconds", "Connecting and each SMTP command.", type=float, default=10.0, minimum=0.1, maximum=600
    ),
)


def build_message(mail: Mail, message_id: str) -> EmailMessage:
    """The RFC 5322 message of ``mail`` (without BCC headers), Message-ID ``<message_id@layotto>``."""
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.to)
    if mail.cc:
        message["Cc"] = ", ".join(mail.cc)
    message["Subject"] = mail.subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = f"<{message_id}@layotto>"
    if mail.priority:
        message["X-Priority"] = str(mail.priority)
    for name, value in mail.headers.items():
        message[name] = value
    if mail.text is not None:
        message.set_content(mail.text)
        if mail.html is not None:
            message.add_alternative(mail.html, subtype="html")
    elif mail.html is not None:
        message.set_content(mail.html, subtype="html")
    else:
        message.set_content("")
    return message


def _address_only(value: str) -> str:
    return email.utils.parseaddr(value)[1]


class SmtpSender:
    """Sends mail through one configured SMTP server; ``component`` names it in errors."""

    def __init__(self, component: str, metadata: Mapping[str, Any], where: str) -> None:
        self.component = component
        encryption = str(metadata["encryption"])
        if encryption not in ENCRYPTIONS:
            raise ConfigError(f"{where}.encryption: expected one of {', '.join(ENCRYPTIONS)}, got {encryption!r}")
        self._host = str(metadata["host"])
        self._port = int(metadata["port"])
        self._user = str(metadata["user"]) or None
        self._password = str(metadata["password"]) if self._user else None
        self._timeout = float(metadata["timeoutInSeconds"])
        self._use_tls = encryption == "tls"
        self._start_tls: bool | None = {"auto": None, "starttls": True, "none": False}.get(encryption, False)
        self._tls = ssl.create_default_context(cafile=str(metadata["caFile"]) or None)
        if metadata["skipTLSVerify"]:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._user,
            password=self._password,
            timeout=self._timeout,
            use_tls=self._use_tls,
            start_tls=self._start_tls,
            tls_context=self._tls,
        )

    async def send(self, mail: Mail, message_id: str) -> None:
        """Send ``mail`` to every recipient or to none (see the module's doc for the errors)."""
        message = build_message(mail, message_id)
        recipients = [_address_only(a) for a in (*mail.to, *mail.cc, *mail.bcc)]
        client = self._client()
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise self._failure("connect", error) from None
        try:
            await client.mail(_address_only(mail.sender))
            for recipient in recipients:
                await client.rcpt(recipient)
            await client.data(message.as_bytes())
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            if client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await client.rset()
            raise self._failure("send", error) from None
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()

    def _failure(self, step: str, error: Exception) -> Exception:
        where = f"{self._host}:{self._port}"
        if isinstance(error, aiosmtplib.SMTPResponseException):
            answer = f"{where} answered {error.code} {error.message}"
            if isinstance(error, aiosmtplib.SMTPRecipientRefused):
                answer = f"recipient {error.recipient}: {answer}"
            elif isinstance(error, aiosmtplib.SMTPSenderRefused):
                answer = f"sender {error.sender}: {answer}"
            if 500 <= error.code < 600:
                return DeliveryRefused(self.component, answer)
            return BackendUnavailable(self.component, answer)
        if isinstance(error, aiosmtplib.SMTPNotSupported):
            return DeliveryRefused(self.component, f"{where}: {error}")
        return BackendUnavailable(self.component, f"cannot {step} to {where}: {error or type(error).__name__}")


class SmtpEmail(EmailComponent):
    spec = ComponentSpec(
        type="smtp",
        building_block="email",
        description="Sends mail through an SMTP server (aiosmtplib): STARTTLS or TLS, AUTH, all recipients or none. "
        "Templates: ID.txt and/or ID.html files of templatesPath, rendered by Jinja2 in its sandbox "
        "(HTML escaped).",
        metadata=(
            *SMTP_METADATA,
            MetadataField(
                "templatesPath", "Directory of the templates SendEmailWithTemplate names (ID.txt, ID.html).", default=""
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._sender: SmtpSender | None = None
        self._templates: TemplateDirectory | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        where = f"email.{self.name}.metadata"
        self._sender = SmtpSender(self.name, metadata, where)
        self.default_sender = str(metadata["emailFrom"])
        if metadata["templatesPath"]:
            self._templates = TemplateDirectory(str(metadata["templatesPath"]), f"{where}.templatesPath")

    async def send(self, mail: Mail, message_id: str) -> None:
        assert self._sender is not None  # set by init
        await self._sender.send(mail, message_id)

    def render(self, template_id: str, params: Mapping[str, str]) -> Rendered:
        if self._templates is None:
            raise InvalidArgument("template.template_id", f"component {self.name!r} has no templatesPath configured")
        return self._templates.render(template_id, params, self.name)
