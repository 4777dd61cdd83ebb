"""Layotto's SmsService and PhoneCallService on the ``webhook`` provider, against a local aiohttp
endpoint: the JSON body and headers it gets, retries of failures, and its answer mapped back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from server_helpers import free_port
from test_api import call_error, error_info

from layotto.proto.extension.v1.phone import phone_pb2, phone_pb2_grpc
from layotto.proto.extension.v1.sms import sms_pb2, sms_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig


@dataclass
class Endpoint:
    """A gateway stand-in: answers the queued (status, body) pairs in turn, then 200 with ``reply``."""

    port: int = 0
    queued: list[tuple[int, str]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.json()))
        if self.queued:
            status, text = self.queued.pop(0)
            return web.Response(status=status, text=text)
        return web.json_response(self.reply)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    gateway = Endpoint(port=free_port())
    app = web.Application()
    app.router.add_post("/send", gateway.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", gateway.port).start()
    yield gateway
    await runner.cleanup()


@pytest.fixture
async def runtime(tmp_path: Path, endpoint: Endpoint) -> AsyncIterator[Runtime]:
    url = f"http://127.0.0.1:{endpoint.port}/send"
    common = {"url": url, "retryIntervalInSeconds": "0.01", "maxRetries": "2"}
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "sms": {
                "gateway": ComponentConfig(
                    "webhook", {**common, "authToken": "tok-123", "headers": '{"X-Tenant": "blue"}'}
                ),
                "nowhere": ComponentConfig(
                    "webhook",
                    {"url": f"http://127.0.0.1:{free_port()}/", "maxRetries": "1", "retryIntervalInSeconds": "0"},
                ),
            },
            "phone": {"voice": ComponentConfig("webhook", common)},
        },
    )
    async with Runtime(config) as rt:
        yield rt


@pytest.fixture
def sms(runtime: Runtime) -> sms_pb2_grpc.SmsServiceStub:
    return sms_pb2_grpc.SmsServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}"))


@pytest.fixture
def phone(runtime: Runtime) -> phone_pb2_grpc.PhoneCallServiceStub:
    return phone_pb2_grpc.PhoneCallServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}"))


def sms_request(component: str = "gateway", numbers: tuple[str, ...] = ("+8613800000000",)) -> Any:
    return sms_pb2.SendSmsWithTemplateRequest(
        component_name=component,
        phone_numbers=list(numbers),
        template=sms_pb2.Template(template_id="verify", template_params={"code": "4711"}),
        sign_name="Layotto",
        sender_id="layotto-1",
        metadata={"region": "eu"},
    )


async def test_sms_posts_the_documented_body_and_maps_the_answer(
    sms: sms_pb2_grpc.SmsServiceStub, endpoint: Endpoint
) -> None:
    endpoint.reply = {
        "requestId": "gw-1",
        "results": [{"code": "OK", "message": "queued", "metadata": {"serialNo": "77"}}, {"code": "LimitExceeded"}],
    }
    answer = await sms.SendSmsWithTemplate(sms_request(numbers=("+8613800000000", "+49 (30) 1234-5678")))
    assert answer.request_id == "gw-1"
    assert [(r.code, r.message, dict(r.metadata)) for r in answer.results] == [
        ("OK", "queued", {"serialNo": "77"}),
        ("LimitExceeded", "", {}),
    ]
    ((headers, document),) = endpoint.received
    assert headers["Authorization"] == "Bearer tok-123" and headers["X-Tenant"] == "blue"
    assert headers["Content-Type"] == "application/json"
    assert document == {
        "kind": "sms",
        "requestId": headers["Idempotency-Key"],
        "phoneNumbers": ["+8613800000000", "+49 (30) 1234-5678"],
        "template": {"id": "verify", "params": {"code": "4711"}},
        "signName": "Layotto",
        "senderId": "layotto-1",
        "metadata": {"region": "eu"},
    }


async def test_failures_are_retried_with_the_same_idempotency_key(
    sms: sms_pb2_grpc.SmsServiceStub, endpoint: Endpoint
) -> None:
    endpoint.queued = [(503, "busy"), (429, "slow down")]
    answer = await sms.SendSmsWithTemplate(sms_request())
    assert len(endpoint.received) == 3
    keys = {headers["Idempotency-Key"] for headers, _ in endpoint.received}
    assert keys == {answer.request_id}  # no requestId in the answer: the runtime's own


async def test_retries_are_bounded_then_unavailable(sms: sms_pb2_grpc.SmsServiceStub, endpoint: Endpoint) -> None:
    endpoint.queued = [(500, "down")] * 5
    error = await call_error(sms.SendSmsWithTemplate(sms_request()))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(error).reason == "BACKEND_UNAVAILABLE"
    assert "answered 500: down (after 3 attempts)" in (error.details() or "")
    assert len(endpoint.received) == 3


async def test_a_client_error_is_refused_at_once_with_the_answer(
    sms: sms_pb2_grpc.SmsServiceStub, endpoint: Endpoint
) -> None:
    endpoint.queued = [(400, json.dumps({"error": "unknown template verify"}))]
    error = await call_error(sms.SendSmsWithTemplate(sms_request()))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "DELIVERY_REFUSED"
    assert 'answered 400: {"error": "unknown template verify"}' in (error.details() or "")
    assert len(endpoint.received) == 1


async def test_an_unreachable_endpoint_is_unavailable(sms: sms_pb2_grpc.SmsServiceStub) -> None:
    error = await call_error(sms.SendSmsWithTemplate(sms_request("nowhere")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "(after 2 attempts)" in (error.details() or "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (sms_request(numbers=()), "phone_numbers"),
        (sms_request(numbers=("+8613800000000", "call me")), "phone_numbers[1]"),
        (
            sms_pb2.SendSmsWithTemplateRequest(component_name="gateway", phone_numbers=["123456"]),
            "template.template_id",
        ),
        (sms_request("nope"), "component_name"),
    ],
)
async def test_bad_sms_requests_name_the_field(
    sms: sms_pb2_grpc.SmsServiceStub, endpoint: Endpoint, request_: Any, field: str
) -> None:
    error = await call_error(sms.SendSmsWithTemplate(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).metadata["field"] == field
    assert endpoint.received == []


async def test_voice_call_posts_its_body_and_answers_the_gateways_id(
    phone: phone_pb2_grpc.PhoneCallServiceStub, endpoint: Endpoint
) -> None:
    endpoint.reply = {"requestId": "call-9"}
    answer = await phone.SendVoiceWithTemplate(
        phone_pb2.SendVoiceWithTemplateRequest(
            component_name="voice",
            template=phone_pb2.VoiceTemplate(template_id="alarm", template_params={"host": "db-1"}),
            to_mobile=["+15550100"],
            from_mobile="+15550199",
        )
    )
    assert answer.request_id == "call-9"
    ((headers, document),) = endpoint.received
    assert "Authorization" not in headers
    assert document == {
        "kind": "voice",
        "requestId": headers["Idempotency-Key"],
        "toMobile": ["+15550100"],
        "fromMobile": "+15550199",
        "template": {"id": "alarm", "params": {"host": "db-1"}},
    }


async def test_bad_voice_request_names_the_field(phone: phone_pb2_grpc.PhoneCallServiceStub) -> None:
    request = phone_pb2.SendVoiceWithTemplateRequest(
        component_name="voice",
        template=phone_pb2.VoiceTemplate(template_id="alarm"),
        to_mobile=["+15550100"],
        from_mobile="x",
    )
    error = await call_error(phone.SendVoiceWithTemplate(request))
    assert (error.code(), error_info(error).metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "from_mobile")
