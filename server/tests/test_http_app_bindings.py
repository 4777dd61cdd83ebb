"""Input bindings delivered to an app that speaks only HTTP (``app_protocol: http``) as Dapr does:
``OPTIONS /<binding>`` asks whether the app wants it (404: no; 2xx or 405: yes; anything else: asked
again), each event is ``POST /<binding>`` (data as the body, metadata as headers, the app token), a
non-2xx answer fails the event (a Redis list delivers it again) and a JSON answer saves state and goes
on to output bindings. One runtime in-process, an aiohttp app in-process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from backends import address, require
from server_helpers import free_port
from test_bindings import http_target
from test_pubsub import wait_for

from layotto.server import Runtime
from layotto.server.config import from_mapping
from layotto.server.errors import InvalidArgument
from layotto.server.http_appbindings import event_headers, reply_of_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpBindingApp:
    """An aiohttp app with one POST route per binding in ``routes``; records every request it gets
    (method, path, headers, body). Unrouted paths answer 404 and OPTIONS on a POST route 405, as
    aiohttp does (and as Dapr's SDK apps do)."""

    def __init__(self, routes: dict[str, Handler], *, options_status: list[int] | None = None) -> None:
        self.port = free_port()
        self.routes = routes
        self.requests: list[dict[str, Any]] = []
        self.options_status = options_status or []  # answers to the first OPTIONS requests, in order

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {"method": request.method, "path": request.path, "headers": dict(request.headers), "body": body}
        )
        if request.method == "OPTIONS" and self.options_status:
            return web.Response(status=self.options_status.pop(0))
        return await handler(request)

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == path]

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        app = web.Application(middlewares=[self._record])
        for name, handler in self.routes.items():
            app.router.add_post(f"/{name}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield
        finally:
            await runner.cleanup()


def http_app_config(app: HttpBindingApp, tmp_path: Path, bindings: dict[str, Any], **extra: Any) -> Any:
    return from_mapping(
        {
            "app_id": "app",
            "data_dir": str(tmp_path),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "app_protocol": "http",
            "app_port": app.port,
            "bindings": bindings,
            **extra,
        }
    )


async def test_a_cron_event_is_posted_to_the_http_app_and_its_json_reply_saves_state_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_API_TOKEN", "app-secret")
    runner, url, received = await http_target()

    async def on_tick(request: web.Request) -> web.Response:
        reply = {
            "storeName": "mem",
            "state": [{"key": "last-tick", "value": {"seen": True}}],
            "to": ["web"],
            "data": {"n": 1},
            "concurrency": "parallel",
        }
        return web.json_response(reply)

    async def on_plain(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = HttpBindingApp({"tick": on_tick, "plain": on_plain})  # no route for "idle": 404
    every = {"type": "cron", "metadata": {"schedule": "@every 200ms"}}
    bindings = {"tick": every, "plain": every, "idle": every, "web": {"type": "http", "metadata": {"url": url}}}
    config = http_app_config(app, tmp_path, bindings, state={"mem": {"type": "in-memory"}})
    try:
        async with app.serving(), Runtime(config) as rt:
            await wait_for(lambda: app.posts("/tick") and app.posts("/plain") and received)
            asked = {r["path"] for r in app.requests if r["method"] == "OPTIONS"}
            assert asked == {"/tick", "/plain", "/idle"}  # every input binding, not the output one
            assert rt.app_bindings is not None and rt.app_bindings.readers.reading == ["plain", "tick"]
            post = app.posts("/tick")[0]
            assert post["body"] == b"" and post["headers"]["Content-Type"] == "application/json"
            assert post["headers"]["dapr-api-token"] == "app-secret"
            assert post["headers"]["timeZone"] == "Local" and post["headers"]["readTimeUTC"].endswith(" +0000 UTC")
            assert received[0]["method"] == "POST" and json.loads(received[0]["body"]) == {"n": 1}
            store = rt.components.find("state", "mem", "store_name")
            saved = await store.get("last-tick")  # type: ignore[attr-defined]
            assert saved is not None and json.loads(saved.value) == {"seen": True}
            await wait_for(lambda: len(app.posts("/tick")) >= 2)  # acknowledged events: the cron goes on
            assert [r for r in app.requests if r["path"] == "/idle" and r["method"] != "OPTIONS"] == []
    finally:
        await runner.cleanup()


async def test_a_failed_event_is_delivered_again_by_a_redis_list_after_the_app_was_asked_again(
    tmp_path: Path,
) -> None:
    require("redis")
    import redis.asyncio as aioredis

    key = f"http-binding-{uuid.uuid4().hex}"
    processing = f"{key}:processing:app"
    client = aioredis.Redis.from_url(f"redis://{address('redis')}")
    await client.lpush(key, b"a", b"b", b"c")  # the list's tail (a) is the oldest
    failed: list[bytes] = []

    async def on_job(request: web.Request) -> web.Response:
        body = await request.read()
        if body == b"b" and not failed:
            failed.append(body)
            return web.Response(status=500, text="not this time")
        return web.Response(status=204)

    # the first OPTIONS answers 503 (neither yes nor no): the binding is asked again after 1 s
    app = HttpBindingApp({"jobs": on_job}, options_status=[503])
    metadata = {"redisHost": address("redis"), "listKey": key, "redeliverIntervalInSeconds": "0.1"}
    try:
        async with (
            app.serving(),
            Runtime(http_app_config(app, tmp_path, {"jobs": {"type": "redis", "metadata": metadata}})),
        ):
            await wait_for(lambda: any(p["body"] == b"c" for p in app.posts("/jobs")), 20)
            methods = [r["method"] for r in app.requests if r["path"] == "/jobs"]
            assert methods[:3] == ["OPTIONS", "OPTIONS", "POST"]  # read once the app said yes
            assert [p["body"] for p in app.posts("/jobs")] == [b"a", b"b", b"b", b"c"]
            assert app.posts("/jobs")[0]["headers"]["key"] == key  # the event's metadata as headers
            for _ in range(100):  # the last item leaves the processing list once the app answered
                if await client.llen(processing) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await client.llen(processing) == 0 and await client.llen(key) == 0
    finally:
        await client.delete(key, processing)
        await client.aclose()


def test_the_reply_body_is_daprs_json_or_a_plain_acknowledgement() -> None:
    for plain in (b"", b"ok", b"[1, 2]", b'"done"', b"\xff"):
        assert reply_of_body(plain) is None
    reply = reply_of_body(b'{"storename": "s", "State": [{"key": "k", "value": "v"}], "TO": ["out"]}')
    assert reply is not None and reply.store_name == "s" and reply.to == ("out",)  # names match ignoring case
    assert reply.states[0].key == "k" and reply.states[0].value == b'"v"' and reply.fields == ("state[0]",)
    assert reply.data == b"null" and not reply.parallel  # Dapr sends the JSON of an absent data: null
    with pytest.raises(InvalidArgument) as bad_to:
        reply_of_body(b'{"to": "out"}')
    assert bad_to.value.field == "to"
    with pytest.raises(InvalidArgument) as bad_state:
        reply_of_body(b'{"storeName": "s", "state": [{"value": 1}]}')
    assert bad_state.value.field == "state[0].key"


def test_metadata_that_cannot_be_a_header_is_left_out() -> None:
    metadata = {"key": "k1", "bad\nname": "x", "split": "a\r\nInjected: 1", "Content-Type": "text/evil"}
    metadata["dapr-api-token"] = "forged"
    assert event_headers(metadata) == {"key": "k1"}
