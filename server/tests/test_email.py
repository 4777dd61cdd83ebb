"""Layotto's EmailService and Dapr's smtp output binding against the real SMTP server that
scripts/backends starts (aiosmtpd, smtp_server.py): every message is read back from its maildir.

The server offers STARTTLS with a self-signed certificate and AUTH (layotto/layotto), stamps each
stored message with X-Smtp-Tls, X-Smtp-Auth and the envelope (X-MailFrom, X-RcptTo), and refuses
recipients at refused.invalid with 550.
"""

from __future__ import annotations

import mailbox
import uuid
from collections.abc import AsyncIterator
from email.message import Message
from pathlib import Path

import grpc
import pytest
from backends import SMTP_CA, SMTP_MAILDIR, address, require
from server_helpers import free_port
from test_api import call_error, error_info

from layotto.proto.dapr.runtime.v1 import binding_pb2, dapr_pb2_grpc
from layotto.proto.extension.v1.email import email_pb2, email_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import ConfigError
from layotto.server.components.email.templates import TemplateDirectory
from layotto.server.components.registry import registry_for
from layotto.server.config import ComponentConfig, from_mapping
from layotto.server.dapr_manifests import load_manifests

SENDER = "Layotto Tests <noreply@layotto.test>"


def smtp_metadata(**extra: str) -> dict[str, str]:
    host, _, port = address("smtp").rpartition(":")
    return {"host": host, "port": port, "timeoutInSeconds": "5", **extra}


def write_templates(directory: Path) -> Path:
    directory.mkdir()
    (directory / "welcome.txt").write_text("Hello {{ name }}, welcome to {{ team }}.\n")
    (directory / "welcome.html").write_text("<p>Hello <b>{{ name }}</b>, welcome to {{ team }}.</p>\n")
    (directory / "receipt.html").write_text("<p>Total: {{ total }}</p>\n")
    (directory / "notes.md").write_text("not a template: only .txt and .html are\n")
    return directory


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    require("smtp")
    secure = {"encryption": "starttls", "caFile": SMTP_CA, "user": "layotto", "password": "layotto"}
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "email": {
                "mail": ComponentConfig(
                    "smtp",
                    smtp_metadata(
                        **secure, emailFrom=SENDER, templatesPath=str(write_templates(tmp_path / "templates"))
                    ),
                ),
                "plain": ComponentConfig("smtp", smtp_metadata(encryption="none")),
                "wrong-password": ComponentConfig("smtp", smtp_metadata(**{**secure, "password": "nope"})),
                "down": ComponentConfig("smtp", {"host": "127.0.0.1", "port": str(free_port()), "emailFrom": SENDER}),
            },
            "bindings": {
                "mailer": ComponentConfig(
                    "smtp",
                    smtp_metadata(**secure, emailFrom=SENDER, emailTo="ops@layotto.test", subject="default subject"),
                )
            },
        },
    )
    async with Runtime(config) as rt:
        yield rt


@pytest.fixture
def email(runtime: Runtime) -> email_pb2_grpc.EmailServiceStub:
    return email_pb2_grpc.EmailServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}"))


@pytest.fixture
def dapr(runtime: Runtime) -> dapr_pb2_grpc.DaprStub:
    return dapr_pb2_grpc.DaprStub(grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}"))


def delivered(predicate_header: str, value: str) -> list[Message]:
    """The messages in the SMTP server's maildir whose header ``predicate_header`` is ``value``."""
    box = mailbox.Maildir(SMTP_MAILDIR, create=False)
    return [message for message in box if message.get(predicate_header) == value]


def delivered_one(request_id: str) -> Message:
    found = delivered("Message-ID", f"<{request_id}@layotto>")
    assert len(found) == 1
    return found[0]


def body(message: Message, subtype: str) -> str:
    for part in message.walk():
        if part.get_content_type() == f"text/{subtype}":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError(f"no text/{subtype} part")


def addresses(to: list[str], cc: list[str] = [], sender: str = "") -> email_pb2.EmailAddress:  # noqa: B006
    return email_pb2.EmailAddress(**{"from": sender}, to=to, cc=cc)


async def test_send_email_arrives_over_starttls_with_auth_and_cc(email: email_pb2_grpc.EmailServiceStub) -> None:
    subject = f"plain {uuid.uuid4()}"
    answer = await email.SendEmail(
        email_pb2.SendEmailRequest(
            component_name="mail",
            subject=subject,
            content=email_pb2.Content(text="Line one.\nLine two: é ü.\n"),
            address=addresses(["Alice <alice@layotto.test>", "bob@layotto.test"], cc=["carol@layotto.test"]),
        )
    )
    message = delivered_one(answer.request_id)
    assert message["Subject"] == subject
    assert message["From"] == SENDER
    assert message["To"] == "Alice <alice@layotto.test>, bob@layotto.test"
    assert message["Cc"] == "carol@layotto.test"
    assert message["X-Smtp-Tls"] == "yes" and message["X-Smtp-Auth"] == "layotto"
    assert message["X-RcptTo"] == "alice@layotto.test, bob@layotto.test, carol@layotto.test"
    assert body(message, "plain") == "Line one.\nLine two: é ü.\n"


async def test_a_request_sender_wins_and_plain_smtp_sends_without_tls(email: email_pb2_grpc.EmailServiceStub) -> None:
    answer = await email.SendEmail(
        email_pb2.SendEmailRequest(
            component_name="plain",
            subject="no tls",
            content=email_pb2.Content(text="hi"),
            address=addresses(["dave@layotto.test"], sender="sender@layotto.test"),
        )
    )
    message = delivered_one(answer.request_id)
    assert message["From"] == "sender@layotto.test"
    assert message["X-Smtp-Tls"] == "no" and message["X-Smtp-Auth"] == ""


async def test_template_renders_text_and_escaped_html(email: email_pb2_grpc.EmailServiceStub) -> None:
    answer = await email.SendEmailWithTemplate(
        email_pb2.SendEmailWithTemplateRequest(
            component_name="mail",
            template=email_pb2.EmailTemplate(
                template_id="welcome", template_params={"name": "<script>x</script>", "team": "Ops & Co"}
            ),
            subject="welcome",
            address=addresses(["erin@layotto.test"]),
        )
    )
    message = delivered_one(answer.request_id)
    assert message.get_content_type() == "multipart/alternative"
    assert body(message, "plain") == "Hello <script>x</script>, welcome to Ops & Co.\n"
    assert body(message, "html") == "<p>Hello <b>&lt;script&gt;x&lt;/script&gt;</b>, welcome to Ops &amp; Co.</p>\n"


async def test_an_html_only_template_sends_html(email: email_pb2_grpc.EmailServiceStub) -> None:
    answer = await email.SendEmailWithTemplate(
        email_pb2.SendEmailWithTemplateRequest(
            component_name="mail",
            template=email_pb2.EmailTemplate(template_id="receipt", template_params={"total": "42.00"}),
            subject="receipt",
            address=addresses(["frank@layotto.test"]),
        )
    )
    message = delivered_one(answer.request_id)
    assert message.get_content_type() == "text/html"
    assert body(message, "html") == "<p>Total: 42.00</p>\n"


@pytest.mark.parametrize(
    ("template_id", "params", "field", "words"),
    [
        ("nope", {}, "template.template_id", "has no template 'nope' (has: receipt, welcome)"),
        ("../templates/welcome", {}, "template.template_id", "has no template"),
        ("notes", {}, "template.template_id", "has no template"),
        ("welcome", {"name": "x"}, "template.template_params", "'team' is undefined"),
    ],
)
async def test_template_errors_name_the_field(
    email: email_pb2_grpc.EmailServiceStub, template_id: str, params: dict[str, str], field: str, words: str
) -> None:
    error = await call_error(
        email.SendEmailWithTemplate(
            email_pb2.SendEmailWithTemplateRequest(
                component_name="mail",
                template=email_pb2.EmailTemplate(template_id=template_id, template_params=params),
                address=addresses(["x@layotto.test"]),
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == field
    assert words in (error.details() or "")


@pytest.mark.parametrize(
    ("component", "subject", "address", "field"),
    [
        ("mail", "s", addresses(["ok@layotto.test", "not an address"]), "address.to[1]"),
        ("mail", "s", addresses(["ok@layotto.test"], cc=["@layotto.test"]), "address.cc[0]"),
        ("mail", "s", addresses(["ok@layotto.test"], sender="x@y\r\nBcc: victim@layotto.test"), "address.from"),
        ("mail", "s", addresses([]), "address.to"),
        ("mail", "s", addresses(["josé@layotto.test"]), "address.to[0]"),  # no SMTPUTF8
        ("mail", "s", addresses(["x" * 250 + "@layotto.test"]), "address.to[0]"),
        ("plain", "s", addresses(["ok@layotto.test"]), "address.from"),  # no emailFrom default
        ("mail", "a\r\nBcc: victim@layotto.test", addresses(["ok@layotto.test"]), "subject"),
        ("nope", "s", addresses(["ok@layotto.test"]), "component_name"),
    ],
)
async def test_bad_requests_name_the_field(
    email: email_pb2_grpc.EmailServiceStub, component: str, subject: str, address: email_pb2.EmailAddress, field: str
) -> None:
    request = email_pb2.SendEmailRequest(
        component_name=component, subject=subject, content=email_pb2.Content(text="x"), address=address
    )
    error = await call_error(email.SendEmail(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == field


async def test_a_refused_recipient_fails_the_whole_message(email: email_pb2_grpc.EmailServiceStub) -> None:
    subject = f"refused {uuid.uuid4()}"
    error = await call_error(
        email.SendEmail(
            email_pb2.SendEmailRequest(
                component_name="mail",
                subject=subject,
                content=email_pb2.Content(text="x"),
                address=addresses(["ok@layotto.test", "nobody@refused.invalid"]),
            )
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "DELIVERY_REFUSED"
    assert "recipient nobody@refused.invalid" in (error.details() or "")
    assert "550 5.1.1 <nobody@refused.invalid>: mailbox unavailable" in (error.details() or "")
    assert delivered("Subject", subject) == []  # all or nothing: ok@ did not get it either


async def test_wrong_password_is_refused_with_the_servers_answer(email: email_pb2_grpc.EmailServiceStub) -> None:
    request = email_pb2.SendEmailRequest(
        component_name="wrong-password",
        content=email_pb2.Content(text="x"),
        address=addresses(["a@layotto.test"], sender="a@layotto.test"),
    )
    error = await call_error(email.SendEmail(request))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "535" in (error.details() or "")


async def test_a_server_that_is_down_is_unavailable(email: email_pb2_grpc.EmailServiceStub) -> None:
    error = await call_error(
        email.SendEmail(
            email_pb2.SendEmailRequest(
                component_name="down", content=email_pb2.Content(text="x"), address=addresses(["a@layotto.test"])
            )
        )
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(error).reason == "BACKEND_UNAVAILABLE"
    assert "cannot connect to 127.0.0.1:" in (error.details() or "")


async def test_smtp_binding_sends_html_with_bcc_and_priority(dapr: dapr_pb2_grpc.DaprStub) -> None:
    answer = await dapr.InvokeBinding(
        binding_pb2.InvokeBindingRequest(
            name="mailer",
            operation="create",
            data=b"<h1>Report</h1>",
            metadata={
                "emailTo": "grace@layotto.test; heidi@layotto.test",
                "emailCC": "ivan@layotto.test",
                "emailBCC": "hidden@layotto.test",
                "subject": "report",
                "priority": "1",
            },
        )
    )
    message_id = answer.metadata["messageId"]
    (message,) = delivered("Message-ID", message_id)
    assert message["To"] == "grace@layotto.test, heidi@layotto.test"
    assert message["Cc"] == "ivan@layotto.test"
    assert message["Bcc"] is None
    assert "hidden@layotto.test" in message["X-RcptTo"]
    assert message["X-Priority"] == "1" and message["Subject"] == "report"
    assert message.get_content_type() == "text/html" and body(message, "html") == "<h1>Report</h1>\n"


async def test_smtp_binding_uses_the_components_defaults(dapr: dapr_pb2_grpc.DaprStub) -> None:
    answer = await dapr.InvokeBinding(binding_pb2.InvokeBindingRequest(name="mailer", operation="create", data=b"x"))
    (message,) = delivered("Message-ID", answer.metadata["messageId"])
    assert (message["To"], message["Subject"], message["X-Priority"]) == ("ops@layotto.test", "default subject", "3")


@pytest.mark.parametrize(
    ("operation", "metadata", "field"),
    [
        ("create", {"emailTo": "ok@layotto.test;bad"}, "metadata.emailTo"),
        ("create", {"priority": "9"}, "metadata.priority"),
        ("create", {"subject": "a\u2028Bcc: evil@layotto.test"}, "metadata.subject"),
        ("create", {"emailCC": '"a\x85b" <c@layotto.test>'}, "metadata.emailCC"),
        ("get", {}, "operation"),
    ],
)
async def test_smtp_binding_refuses_bad_metadata(
    dapr: dapr_pb2_grpc.DaprStub, operation: str, metadata: dict[str, str], field: str
) -> None:
    request = binding_pb2.InvokeBindingRequest(name="mailer", operation=operation, data=b"x", metadata=metadata)
    error = await call_error(dapr.InvokeBinding(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == field


def test_a_template_syntax_error_stops_start_up_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.html").write_text("<p>{{ name </p>")
    with pytest.raises(ConfigError, match=r"email.mail.metadata.templatesPath: .*broken.html: line 1: "):
        TemplateDirectory(str(tmp_path), "email.mail.metadata.templatesPath")


def test_a_dapr_smtp_binding_manifest_and_layotto_sections_load(tmp_path: Path) -> None:
    names = ("host", "port", "user", "password", "skipTLSVerify", "emailFrom", "emailTo", "emailCC", "emailBCC")
    values = ("smtp.example.com", "587", "u", "p", "true", "a@x.test", "b@x.test", "c@x.test", "d@x.test")
    items = "".join(f"  - {{name: {n}, value: '{v}'}}\n" for n, v in zip(names, values, strict=True))
    (tmp_path / "smtp.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: mailer}\n"
        "spec:\n  type: bindings.smtp\n  version: v1\n  metadata:\n" + items + "  - {name: priority, value: '1'}\n"
    )
    ((block, name, type_name, metadata, _),) = load_manifests(tmp_path)
    assert (block, name, type_name) == ("bindings", "mailer", "smtp")
    parsed = registry_for("bindings").spec("smtp").parse_metadata(metadata, "bindings.mailer.metadata")
    assert (parsed["port"], parsed["skipTLSVerify"], parsed["priority"], parsed["encryption"]) == (587, True, 1, "auto")
    config = from_mapping(
        {
            "email": {"mail": {"type": "smtp", "metadata": {"host": "h"}}},
            "sms": {"s": {"type": "webhook", "metadata": {"url": "http://h/"}}},
            "phone": {"p": {"type": "webhook", "metadata": {"url": "http://h/"}}},
        }
    )
    assert sorted(config.components) == ["email", "phone", "sms"]
