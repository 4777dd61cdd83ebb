"""SMS and phone call round-trips through a ``webhook`` provider (docs/email.md lists its JSON bodies).

Each case starts a gateway stand-in (an aiohttp server on loopback that answers what the case
queues) and a runtime of its own holding the component under test as the target's runtime config
declares it, its ``url`` pointed at that gateway (and, unless declared, a bearer token, two
retries and a 10 ms retry interval). The case checks the JSON body and headers the gateway gets,
that a 5xx answer is retried with the same ``Idempotency-Key``, that the retries are bounded (then
UNAVAILABLE), that a 4xx answer is FAILED_PRECONDITION at once, and how the gateway's answer
becomes the RPC's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web

from layotto.conformance.cases.own_runtime import declaration, own_runtimes, with_metadata
from layotto.conformance.model import CaseContext, CaseFailed, check
from layotto.conformance.spawn import free_port
from layotto.proto.extension.v1.phone import phone_pb2, phone_pb2_grpc
from layotto.proto.extension.v1.sms import sms_pb2, sms_pb2_grpc

#: what the case sets when the declaration does not (a token, so the header can be checked; quick retries)
DEFAULTS = {"authToken": "conformance-token", "maxRetries": "2", "retryIntervalInSeconds": "0.01"}


@dataclass
class Gateway:
    """Answers the queued (status, body) pairs in turn, then 200 with ``reply`` as JSON; records requests."""

    url: str = ""
    queued: list[tuple[int, str]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    received: list[tuple[dict[str, str], Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        self.received.append((dict(request.headers), body))
        if self.queued:
            status, answer = self.queued.pop(0)
            return web.Response(status=status, text=answer)
        return web.json_response(self.reply)

    def expect(self, queued: list[tuple[int, str]], reply: dict[str, Any]) -> None:
        self.queued, self.reply = list(queued), reply
        self.received.clear()


@contextlib.asynccontextmanager
async def _gateway_and_runtime(ctx: CaseContext, block: str) -> AsyncIterator[tuple[Gateway, dict[str, Any], str]]:
    """The gateway, the component's metadata as the runtime got it, and the runtime's address."""
    gateway = Gateway()
    app = web.Application()
    app.router.add_post("/send", gateway.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gateway.url = f"http://127.0.0.1:{port}/send"
    try:
        found = declaration(ctx, block)
        declared = {str(k): str(v) for k, v in (found.get("metadata") or {}).items()}
        metadata = {**DEFAULTS, **declared, "url": gateway.url}
        component = with_metadata(found, **metadata)
        async with own_runtimes({"app_id": ctx.key(f"{block}-app"), block: {ctx.component: component}}) as (address,):
            yield gateway, metadata, address
    finally:
        await runner.cleanup()


def _check_headers(headers: dict[str, str], metadata: dict[str, Any], request_id: str) -> None:
    check(headers.get("Content-Type", "").startswith("application/json"), f"Content-Type {headers.get('Content-Type')}")
    expected = f"Bearer {metadata['authToken']}"
    check(headers.get("Authorization") == expected, f"Authorization {headers.get('Authorization')!r}, not {expected!r}")
    check(headers.get("Idempotency-Key") == request_id, f"Idempotency-Key {headers.get('Idempotency-Key')!r}")


async def _expect_error(call: Any, code: grpc.StatusCode, words: str) -> None:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        if error.code() != code or words not in (error.details() or ""):
            raise CaseFailed(
                f"expected {code.name} saying {words!r}, got {error.code().name}: {error.details()}"
            ) from None
        return
    raise CaseFailed(f"expected {code.name}, but the call succeeded")


async def _check_failures(ctx: CaseContext, gateway: Gateway, metadata: dict[str, Any], call: Any) -> None:
    """Bounded retries of 5xx answers, then UNAVAILABLE; a 4xx answer refused at once."""
    attempts = int(metadata["maxRetries"]) + 1
    gateway.expect([(500, "gateway down")] * attempts, {})
    await _expect_error(call(), grpc.StatusCode.UNAVAILABLE, f"(after {attempts} attempts)")
    check(len(gateway.received) == attempts, f"{len(gateway.received)} POSTs for {attempts} attempts")
    gateway.expect([(400, '{"error": "unknown template"}')], {})
    await _expect_error(call(), grpc.StatusCode.FAILED_PRECONDITION, '400: {"error": "unknown template"}')
    check(len(gateway.received) == 1, f"a 4xx answer was retried: {len(gateway.received)} POSTs")


async def sms_round_trip(ctx: CaseContext) -> None:
    async with (
        _gateway_and_runtime(ctx, "sms") as (gateway, metadata, address),
        grpc.aio.insecure_channel(address) as ch,
    ):
        stub = sms_pb2_grpc.SmsServiceStub(ch)
        request = sms_pb2.SendSmsWithTemplateRequest(
            component_name=ctx.component,
            phone_numbers=["+8613800000000", "+49 (30) 1234-5678"],
            template=sms_pb2.Template(template_id="verify", template_params={"code": "4711"}),
            sign_name="Layotto",
            sender_id="layotto-1",
            metadata={"region": "eu"},
        )
        results = [{"code": "OK", "message": "queued", "metadata": {"serialNo": "77"}}, {"code": "LimitExceeded"}]
        gateway.expect([(503, "busy")], {"requestId": "gw-1", "results": results})
        answer = await stub.SendSmsWithTemplate(request, timeout=ctx.timeout)
        check(answer.request_id == "gw-1", f"request_id {answer.request_id!r}, the gateway answered 'gw-1'")
        mapped = [(r.code, r.message, dict(r.metadata)) for r in answer.results]
        expected = [("OK", "queued", {"serialNo": "77"}), ("LimitExceeded", "", {})]
        check(mapped == expected, f"results {mapped}, the gateway answered {expected}")
        check(len(gateway.received) == 2, f"a 503 then 200: {len(gateway.received)} POSTs, expected 2")
        (first, document), (retry, again) = gateway.received
        request_id = first.get("Idempotency-Key", "")
        _check_headers(first, metadata, request_id)
        _check_headers(retry, metadata, request_id)
        body = {
            "kind": "sms",
            "requestId": request_id,
            "phoneNumbers": ["+8613800000000", "+49 (30) 1234-5678"],
            "template": {"id": "verify", "params": {"code": "4711"}},
            "signName": "Layotto",
            "senderId": "layotto-1",
            "metadata": {"region": "eu"},
        }
        check(bool(request_id) and document == body == again, f"the gateway got {document}, expected {body}")
        gateway.expect([], {})  # an answer without a requestId: the runtime's own
        answer = await stub.SendSmsWithTemplate(request, timeout=ctx.timeout)
        key = gateway.received[0][0].get("Idempotency-Key")
        check(answer.request_id == key and not answer.results, f"answered {answer} for an empty answer (key {key})")
        await _check_failures(ctx, gateway, metadata, lambda: stub.SendSmsWithTemplate(request, timeout=ctx.timeout))


async def phone_round_trip(ctx: CaseContext) -> None:
    async with (
        _gateway_and_runtime(ctx, "phone") as (gateway, metadata, address),
        grpc.aio.insecure_channel(address) as ch,
    ):
        stub = phone_pb2_grpc.PhoneCallServiceStub(ch)
        request = phone_pb2.SendVoiceWithTemplateRequest(
            component_name=ctx.component,
            template=phone_pb2.VoiceTemplate(template_id="alarm", template_params={"host": "db-1"}),
            to_mobile=["+15550100"],
            from_mobile="+15550199",
        )
        gateway.expect([(502, "bad gateway")], {"requestId": "call-9"})
        answer = await stub.SendVoiceWithTemplate(request, timeout=ctx.timeout)
        check(answer.request_id == "call-9", f"request_id {answer.request_id!r}, the gateway answered 'call-9'")
        check(len(gateway.received) == 2, f"a 502 then 200: {len(gateway.received)} POSTs, expected 2")
        (first, document), (retry, again) = gateway.received
        request_id = first.get("Idempotency-Key", "")
        _check_headers(first, metadata, request_id)
        _check_headers(retry, metadata, request_id)
        body = {
            "kind": "voice",
            "requestId": request_id,
            "toMobile": ["+15550100"],
            "fromMobile": "+15550199",
            "template": {"id": "alarm", "params": {"host": "db-1"}},
        }
        check(bool(request_id) and document == body == again, f"the gateway got {document}, expected {body}")
        await _check_failures(ctx, gateway, metadata, lambda: stub.SendVoiceWithTemplate(request, timeout=ctx.timeout))
