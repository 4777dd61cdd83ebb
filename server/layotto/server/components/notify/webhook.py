"""The ``webhook`` SMS and phone providers: each message is one JSON POST to a configured URL.

Request body (``Content-Type: application/json``; the header ``Idempotency-Key`` carries
``requestId``, the same on every retry)::

    SMS:   {"kind": "sms", "requestId": ID, "phoneNumbers": [...], "template": {"id": ID, "params": {...}},
            "signName": S, "senderId": S, "metadata": {...}}
    phone: {"kind": "voice", "requestId": ID, "toMobile": [...], "fromMobile": S,
            "template": {"id": ID, "params": {...}}}

Auth: ``authToken`` is sent as ``Authorization: Bearer TOKEN`` (take it from a secret store with
the component's secret_ref), ``headers`` adds any others. Answers: a 2xx body may be JSON
``{"requestId": ID, "results": [{"code", "message", "metadata"}]}`` (each part optional; a
missing requestId is the runtime's). A connection failure, a timeout, 408, 429 or 5xx is retried
up to ``maxRetries`` times, ``retryIntervalInSeconds`` apart (doubling), then answers
BackendUnavailable; another 4xx answers DeliveryRefused with the endpoint's answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.notify import (
    PhoneComponent,
    SendStatus,
    SmsComponent,
    SmsRequest,
    SmsResult,
    VoiceRequest,
)
from layotto.server.errors import BackendUnavailable, DeliveryRefused

RETRIED_STATUSES = frozenset({408, 429})
#: the most of an endpoint's answer an error message quotes, in characters
MAX_ANSWER_CHARS = 300

WEBHOOK_METADATA = (
    MetadataField("url", "The endpoint every message is POSTed to.", required=True, example="https://gw.example/sms"),
    MetadataField("authToken", "Sent as Authorization: Bearer TOKEN (empty: no such header).", default="", secret=True),
    MetadataField("headers", "More request headers, a JSON object of strings.", type=dict, value_type=str, default={}),
    MetadataField("maxRetries", "Retries of a failed POST (0: none).", type=int, default=3, minimum=0, maximum=20),
    MetadataField(
        "retryIntervalInSeconds",
        "Wait before the first retry; doubled before each next one.",
        type=float,
        default=0.2,
        minimum=0,
        maximum=60,
    ),
    MetadataField("timeoutInSeconds", "The whole of one POST.", type=float, default=10.0, minimum=0.1, maximum=600),
)


class _Retryable(Exception):
    pass


class WebhookClient:
    """POSTs JSON documents to one endpoint with auth headers and bounded retries."""

    def __init__(self, component: str, metadata: Mapping[str, Any]) -> None:
        self.component = component
        self._url = str(metadata["url"])
        self._headers = {str(k): str(v) for k, v in dict(metadata["headers"]).items()}
        if metadata["authToken"]:
            self._headers["Authorization"] = f"Bearer {metadata['authToken']}"
        self._retries = int(metadata["maxRetries"])
        self._interval = float(metadata["retryIntervalInSeconds"])
        self._timeout = aiohttp.ClientTimeout(total=float(metadata["timeoutInSeconds"]))
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, document: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        """The endpoint's JSON answer (``{}`` when it is not a JSON object)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {**self._headers, "Idempotency-Key": request_id}
        delay, failure = self._interval, ""
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                return await self._post_once(self._session, document, headers)
            except _Retryable as error:
                failure = str(error)
        raise BackendUnavailable(self.component, f"{failure} (after {self._retries + 1} attempts)")

    async def _post_once(
        self, session: aiohttp.ClientSession, document: Mapping[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        try:
            async with session.post(self._url, json=document, headers=headers) as response:
                body = await response.text(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _Retryable(f"POST {self._url}: {error or type(error).__name__}") from None
        answer = f"{self._url} answered {status}: {body[:MAX_ANSWER_CHARS]}"
        if status >= 500 or status in RETRIED_STATUSES:
            raise _Retryable(answer)
        if status >= 400:
            raise DeliveryRefused(self.component, answer)
        try:
            parsed = json.loads(body) if body.strip() else {}
        except ValueError:
            parsed = {}
        return parsed if isinstance(parsed, dict) else {}


def _statuses(answer: Mapping[str, Any]) -> tuple[SendStatus, ...]:
    results = answer.get("results")
    if not isinstance(results, list):
        return ()
    out = []
    for item in results:
        if isinstance(item, dict):
            metadata = item.get("metadata")
            out.append(
                SendStatus(
                    code=str(item.get("code", "")),
                    message=str(item.get("message", "")),
                    metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
                )
            )
    return tuple(out)


class _WebhookLifecycle:
    """The webhook client's life, shared by the SMS and phone components (mixed in before their base)."""

    name: str

    def __init__(self, name: str) -> None:
        super().__init__(name)  # type: ignore[call-arg]  # the component base class after this one
        self._client: WebhookClient | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._client = WebhookClient(self.name, metadata)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


class WebhookSms(_WebhookLifecycle, SmsComponent):
    spec = ComponentSpec(
        type="webhook",
        building_block="sms",
        description="POSTs each SMS as a JSON document to a URL (bearer token, retries); the endpoint's JSON "
        "answer becomes the response (docs/email.md lists the body).",
        metadata=WEBHOOK_METADATA,
    )

    async def send_sms(self, request: SmsRequest) -> SmsResult:
        assert self._client is not None  # set by init
        document = {
            "kind": "sms",
            "requestId": request.request_id,
            "phoneNumbers": list(request.phone_numbers),
            "template": {"id": request.template_id, "params": dict(request.template_params)},
            "signName": request.sign_name,
            "senderId": request.sender_id,
            "metadata": dict(request.metadata),
        }
        answer = await self._client.post(document, request.request_id)
        return SmsResult(str(answer.get("requestId") or request.request_id), _statuses(answer))


class WebhookPhone(_WebhookLifecycle, PhoneComponent):
    spec = ComponentSpec(
        type="webhook",
        building_block="phone",
        description="POSTs each voice call as a JSON document to a URL (bearer token, retries); the endpoint's "
        "requestId becomes the response's (docs/email.md lists the body).",
        metadata=WEBHOOK_METADATA,
    )

    async def send_voice(self, request: VoiceRequest) -> str:
        assert self._client is not None  # set by init
        document = {
            "kind": "voice",
            "requestId": request.request_id,
            "toMobile": list(request.to_mobile),
            "fromMobile": request.from_mobile,
            "template": {"id": request.template_id, "params": dict(request.template_params)},
        }
        answer = await self._client.post(document, request.request_id)
        return str(answer.get("requestId") or request.request_id)
