"""Email, SMS and phone call cases, through Layotto's extension services (api ``layotto``; Dapr
has none): what every provider refuses before it sends anything (on the target itself), and
round-trips through a runtime of the case's own: email through the real SMTP server of
scripts/backends (:mod:`.email_delivery`), SMS and voice calls through a ``webhook`` component and
a gateway the case runs (:mod:`.webhook`).
"""

from __future__ import annotations

import grpc

from layotto.conformance.cases.email_delivery import email_round_trip
from layotto.conformance.cases.webhook import phone_round_trip, sms_round_trip
from layotto.conformance.model import Case, CaseContext, CaseFailed
from layotto.proto.extension.v1.email import email_pb2, email_pb2_grpc
from layotto.proto.extension.v1.phone import phone_pb2, phone_pb2_grpc
from layotto.proto.extension.v1.sms import sms_pb2, sms_pb2_grpc

EMAIL_RPCS = tuple(f"spec.proto.extension.v1.email.EmailService/{n}" for n in ("SendEmail", "SendEmailWithTemplate"))
SMS_RPCS = ("spec.proto.extension.v1.sms.SmsService/SendSmsWithTemplate",)
PHONE_RPCS = ("spec.proto.extension.v1.phone.PhoneCallService/SendVoiceWithTemplate",)
SENDER = "conformance@layotto.test"


async def _refused(call: object, field: str) -> None:
    """The call must be INVALID_ARGUMENT and its message must name ``field``."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise CaseFailed(
                f"{field}: expected INVALID_ARGUMENT, got {error.code().name}: {error.details()}"
            ) from None
        if not (error.details() or "").startswith(f"{field}:"):
            raise CaseFailed(f"the message {error.details()!r} does not name {field!r}") from None
        return
    raise CaseFailed(f"{field}: expected INVALID_ARGUMENT, but the call succeeded")


def _mail(ctx: CaseContext, to: list[str], cc: list[str] = [], subject: str = "s") -> email_pb2.SendEmailRequest:  # noqa: B006
    return email_pb2.SendEmailRequest(
        component_name=ctx.component,
        subject=subject,
        content=email_pb2.Content(text="x"),
        address=email_pb2.EmailAddress(**{"from": SENDER}, to=to, cc=cc),
    )


async def _email_bad_input(ctx: CaseContext) -> None:
    stub = email_pb2_grpc.EmailServiceStub(ctx.channel)
    ok = "ok@layotto.test"
    await _refused(stub.SendEmail(_mail(ctx, ["not an address"]), timeout=ctx.timeout), "address.to[0]")
    await _refused(stub.SendEmail(_mail(ctx, [ok], cc=[ok, "@x"]), timeout=ctx.timeout), "address.cc[1]")
    await _refused(stub.SendEmail(_mail(ctx, []), timeout=ctx.timeout), "address.to")
    await _refused(stub.SendEmail(_mail(ctx, [ok], subject="a\r\nBcc: x@y"), timeout=ctx.timeout), "subject")
    no_template = email_pb2.SendEmailWithTemplateRequest(
        component_name=ctx.component, address=email_pb2.EmailAddress(**{"from": SENDER}, to=[ok])
    )
    await _refused(stub.SendEmailWithTemplate(no_template, timeout=ctx.timeout), "template.template_id")


async def _sms_bad_input(ctx: CaseContext) -> None:
    stub = sms_pb2_grpc.SmsServiceStub(ctx.channel)
    template = sms_pb2.Template(template_id="conformance")

    def request(numbers: list[str], with_template: bool = True) -> sms_pb2.SendSmsWithTemplateRequest:
        return sms_pb2.SendSmsWithTemplateRequest(
            component_name=ctx.component, phone_numbers=numbers, template=template if with_template else None
        )

    await _refused(stub.SendSmsWithTemplate(request(["+15550100", "call me"]), timeout=ctx.timeout), "phone_numbers[1]")
    await _refused(stub.SendSmsWithTemplate(request([]), timeout=ctx.timeout), "phone_numbers")
    await _refused(stub.SendSmsWithTemplate(request(["+15550100"], False), timeout=ctx.timeout), "template.template_id")


async def _phone_bad_input(ctx: CaseContext) -> None:
    stub = phone_pb2_grpc.PhoneCallServiceStub(ctx.channel)
    template = phone_pb2.VoiceTemplate(template_id="conformance")
    bad = phone_pb2.SendVoiceWithTemplateRequest(component_name=ctx.component, template=template, to_mobile=["x"])
    await _refused(stub.SendVoiceWithTemplate(bad, timeout=ctx.timeout), "to_mobile[0]")
    none = phone_pb2.SendVoiceWithTemplateRequest(component_name=ctx.component, template=template)
    await _refused(stub.SendVoiceWithTemplate(none, timeout=ctx.timeout), "to_mobile")


MESSAGING_CASES = [
    Case(
        "email-bad-input",
        "email",
        "bad addresses (to, cc), no recipient, a line break in the subject, no template id: INVALID_ARGUMENT naming it",
        EMAIL_RPCS,
        _email_bad_input,
        apis=("layotto",),
    ),
    Case(
        "sms-bad-input",
        "sms",
        "a bad phone number, none, or no template id is INVALID_ARGUMENT naming the field",
        SMS_RPCS,
        _sms_bad_input,
        apis=("layotto",),
    ),
    Case(
        "phone-bad-input",
        "phone",
        "a bad phone number or none is INVALID_ARGUMENT naming the field",
        PHONE_RPCS,
        _phone_bad_input,
        apis=("layotto",),
    ),
    Case(
        "email-round-trip",
        "email",
        "SendEmail and SendEmailWithTemplate reach the SMTP server over STARTTLS with AUTH: subject, sender, "
        "recipients (to, cc), text, rendered template (HTML escaped) as sent",
        EMAIL_RPCS,
        email_round_trip,
        apis=("layotto",),
    ),
    Case(
        "sms-webhook-round-trip",
        "sms",
        "the gateway gets the documented JSON body with the bearer token and one Idempotency-Key across retries "
        "of a 5xx; its answer becomes the response; bounded retries then UNAVAILABLE; a 4xx is FAILED_PRECONDITION",
        SMS_RPCS,
        sms_round_trip,
        apis=("layotto",),
    ),
    Case(
        "phone-webhook-round-trip",
        "phone",
        "the gateway gets the documented JSON body with the bearer token, a 5xx is retried, its requestId becomes "
        "the response's; bounded retries then UNAVAILABLE; a 4xx is FAILED_PRECONDITION",
        PHONE_RPCS,
        phone_round_trip,
        apis=("layotto",),
    ),
]
