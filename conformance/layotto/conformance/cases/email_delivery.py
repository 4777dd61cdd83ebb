"""Email round-trips through an ``smtp`` component and the real SMTP server of scripts/backends.

That server (aiosmtpd on 127.0.0.1:2525: STARTTLS with a self-signed certificate, AUTH
layotto/layotto) stores every message it accepts in a maildir, stamping it with
``X-Smtp-Tls``, ``X-Smtp-Auth`` and the envelope's recipients (``X-RcptTo``). The case starts a
runtime of its own holding the component under test as the target's runtime config declares it,
plus ``caFile`` (the server's certificate) and ``templatesPath`` (templates the case writes), sends
through it, and reads each message back from the maildir by its subject (unique to the run).

Where: ``$LAYOTTO_TEST_SMTP_MAILDIR`` and ``$LAYOTTO_TEST_SMTP_CA``, by default ``smtp/maildir`` and
``smtp/cert.pem`` under ``$LAYOTTO_BACKENDS_DIR`` (``/tmp/layotto-backends``), as scripts/backends
puts them.
"""

from __future__ import annotations

import mailbox
import os
import tempfile
from email.message import Message
from pathlib import Path

import grpc

from layotto.conformance.cases.own_runtime import declaration, own_runtimes, with_metadata
from layotto.conformance.model import CaseContext, CaseFailed, check
from layotto.proto.extension.v1.email import email_pb2, email_pb2_grpc

_BACKENDS_DIR = os.environ.get("LAYOTTO_BACKENDS_DIR", "/tmp/layotto-backends")
SMTP_MAILDIR = os.environ.get("LAYOTTO_TEST_SMTP_MAILDIR", os.path.join(_BACKENDS_DIR, "smtp", "maildir"))
SMTP_CA = os.environ.get("LAYOTTO_TEST_SMTP_CA", os.path.join(_BACKENDS_DIR, "smtp", "cert.pem"))
SENDER = "Layotto Conformance <conformance@layotto.test>"
TEMPLATES = {
    "welcome.txt": "Hello {{ name }}, welcome to {{ team }}.\n",
    "welcome.html": "<p>Hello <b>{{ name }}</b>, welcome to {{ team }}.</p>\n",
}


def delivered(subject: str) -> Message:
    """The one message in the SMTP server's maildir with ``subject``; CaseFailed if none or several."""
    if not os.path.isdir(SMTP_MAILDIR):
        raise CaseFailed(f"no maildir at {SMTP_MAILDIR} (is the SMTP server of scripts/backends up?)")
    found = [m for m in mailbox.Maildir(SMTP_MAILDIR, create=False) if m.get("Subject") == subject]
    check(len(found) == 1, f"{len(found)} messages with subject {subject!r} in {SMTP_MAILDIR}, expected 1")
    return found[0]


def body(message: Message, subtype: str) -> str:
    for part in message.walk():
        if part.get_content_type() == f"text/{subtype}":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8")
    raise CaseFailed(f"the message has no text/{subtype} part")


def _check_transport(message: Message, user: str, recipients: str) -> None:
    check(message.get("X-Smtp-Tls") == "yes", "the message was not sent over TLS (STARTTLS)")
    check(message.get("X-Smtp-Auth") == user, f"logged in as {message.get('X-Smtp-Auth')!r}, not {user!r}")
    check(message.get("X-RcptTo") == recipients, f"envelope recipients {message.get('X-RcptTo')!r}, not {recipients!r}")


def _certificate() -> str:
    if not os.path.isfile(SMTP_CA):
        raise CaseFailed(f"no SMTP server certificate at {SMTP_CA} (is the SMTP server of scripts/backends up?)")
    return SMTP_CA


async def email_round_trip(ctx: CaseContext) -> None:
    found = declaration(ctx, "email")
    certificate = _certificate()
    user = str((found.get("metadata") or {}).get("user", ""))
    with tempfile.TemporaryDirectory(prefix="layotto-conformance-templates-") as templates:
        for name, text in TEMPLATES.items():
            (Path(templates) / name).write_text(text)
        component = with_metadata(found, caFile=certificate, templatesPath=templates, emailFrom=SENDER)
        config = {"app_id": ctx.key("email-app"), "email": {ctx.component: component}}
        async with own_runtimes(config) as (address,), grpc.aio.insecure_channel(address) as channel:
            stub = email_pb2_grpc.EmailServiceStub(channel)
            await _send_text(ctx, stub, user)
            await _send_template(ctx, stub, user)


async def _send_text(ctx: CaseContext, stub: email_pb2_grpc.EmailServiceStub, user: str) -> None:
    subject = ctx.key("plain mail")
    text = "Line one.\nLine two: é ü.\n"
    to = ["Alice <alice@layotto.test>", "bob@layotto.test"]
    request = email_pb2.SendEmailRequest(
        component_name=ctx.component,
        subject=subject,
        content=email_pb2.Content(text=text),
        address=email_pb2.EmailAddress(**{"from": ""}, to=to, cc=["carol@layotto.test"]),
    )
    answer = await stub.SendEmail(request, timeout=ctx.timeout)  # type: ignore[misc]  # the stub types the sync call
    check(bool(answer.request_id), "SendEmail answered no request_id")
    message = delivered(subject)
    check(message["From"] == SENDER, f"From {message['From']!r}: the component's emailFrom is {SENDER!r}")
    check(message["To"] == ", ".join(to), f"To {message['To']!r}")
    check(message["Cc"] == "carol@layotto.test", f"Cc {message['Cc']!r}")
    _check_transport(message, user, "alice@layotto.test, bob@layotto.test, carol@layotto.test")
    check(body(message, "plain") == text, f"the text arrived as {body(message, 'plain')!r}")


async def _send_template(ctx: CaseContext, stub: email_pb2_grpc.EmailServiceStub, user: str) -> None:
    subject = ctx.key("template mail")
    request = email_pb2.SendEmailWithTemplateRequest(
        component_name=ctx.component,
        template=email_pb2.EmailTemplate(
            template_id="welcome", template_params={"name": "<script>x</script>", "team": "Ops & Co"}
        ),
        subject=subject,
        address=email_pb2.EmailAddress(**{"from": "sender@layotto.test"}, to=["erin@layotto.test"]),
    )
    answer = await stub.SendEmailWithTemplate(request, timeout=ctx.timeout)  # type: ignore[misc]
    check(bool(answer.request_id), "SendEmailWithTemplate answered no request_id")
    message = delivered(subject)
    check(message["From"] == "sender@layotto.test", f"From {message['From']!r}: the request's sender wins")
    check(message["To"] == "erin@layotto.test", f"To {message['To']!r}")
    _check_transport(message, user, "erin@layotto.test")
    check(message.get_content_type() == "multipart/alternative", f"a {message.get_content_type()} message")
    plain = "Hello <script>x</script>, welcome to Ops & Co.\n"
    html = "<p>Hello <b>&lt;script&gt;x&lt;/script&gt;</b>, welcome to Ops &amp; Co.</p>\n"
    check(body(message, "plain") == plain, f"the text part arrived as {body(message, 'plain')!r}")
    check(body(message, "html") == html, f"the HTML part (parameters escaped) arrived as {body(message, 'html')!r}")
