"""Dapr's HTTP service invocation (``/v1.0/invoke/{app-id}/method/...`` and the ``dapr-app-id``
header) on the mesh of test_invocation.py: runtime ``a`` (no app) forwards to ``b`` (gRPC app) and
``c`` (HTTP app), each a `layotto serve` child process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import aiohttp
from test_invocation import Mesh, grpc_app, http_app, mesh  # noqa: F401  (mesh: the module's fixture)


async def test_an_http_app_answers_through_the_http_api_with_its_status(mesh: Mesh) -> None:  # noqa: F811
    base = f"http://{mesh.a.http_address}/v1.0/invoke/c/method"
    async with http_app(mesh.c_app_port) as seen, aiohttp.ClientSession() as http:
        async with http.put(f"{base}/orders/7?x=1&y=2", data=b"body", headers={"x-token": "t"}) as reply:
            assert reply.status == 201 and await reply.read() == b"PUT 7 x=1&y=2 t body"
            assert reply.headers["x-c"] == "1" and reply.content_type == "text/plain"
            assert "dapr-http-status" not in reply.headers
        assert seen[-1].headers["dapr-caller-app-id"] == "a"
        for verb in ("GET", "DELETE", "PATCH"):
            async with http.request(verb, f"{base}/orders/8") as reply:
                assert (await reply.read()).startswith(f"{verb} 8 ".encode())
        async with http.get(f"{base}/missing") as reply:  # the app's 404 and body, passed through
            assert reply.status == 404 and await reply.text() == "no such thing"
        by_header = {"dapr-app-id": "c", "x-token": "h"}
        async with http.post(f"http://{mesh.a.http_address}/orders/9?q=1", data=b"!", headers=by_header) as reply:
            assert reply.status == 201 and await reply.read() == b"POST 9 q=1 h !"
        assert "dapr-app-id" not in seen[-1].headers
        async with http.get(f"http://{mesh.c.http_address}/v1.0/invoke/c/method/missing") as reply:
            assert reply.status == 404  # its own app id: straight to its app, the status passed through


async def test_a_grpc_app_answers_through_the_http_api(mesh: Mesh) -> None:  # noqa: F811
    app, seen, _ = grpc_app()
    async with app.serve(f"127.0.0.1:{mesh.b_app_port}"), aiohttp.ClientSession() as http:
        url = f"http://{mesh.a.http_address}/v1.0/invoke/b/method/echo"
        async with http.post(url, data=b"hi", headers={"Content-Type": "text/plain", "x-k": "v"}) as reply:
            assert reply.status == 200 and await reply.read() == b"echo:hi"
            assert reply.headers["x-answer"] == "yes" and reply.content_type == "text/plain"
        assert seen[-1].caller_app_id == "a" and seen[-1].headers.get("x-k") == "v"


async def test_runtime_errors_answer_dapr_error_bodies(mesh: Mesh) -> None:  # noqa: F811
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://{mesh.a.http_address}/v1.0/invoke/nobody/method/echo") as reply:
            body = await reply.json()
            assert reply.status == 404 and body["errorCode"] == "ERR_DIRECT_INVOKE", body
            assert "'nobody'" in body["message"] and body["details"][0]["reason"] == "APP_NOT_FOUND"
        async with http.post(f"http://{mesh.a.http_address}/v1.0/invoke/c/method/orders/1") as reply:
            body = await reply.json()  # c's app is down
            assert reply.status == 503 and body["details"][0]["reason"] == "APP_UNAVAILABLE", body
        async with http.get(f"http://{mesh.a.http_address}/nothing", headers={"dapr-app-id": "nobody"}) as reply:
            assert reply.status == 404 and (await reply.json())["details"][0]["reason"] == "APP_NOT_FOUND"
        async with http.post(f"http://{mesh.a.http_address}/v1.0/invoke/nobody/method/orders/%0A1") as reply:
            body = await reply.json()  # was {"error": "no such endpoint: ..."}: the route did not match a newline
            assert reply.status == 404 and body["details"][0]["reason"] == "APP_NOT_FOUND", body


DAPR_HTTP_INVOKER = textwrap.dedent("""
    from dapr.clients import DaprClient

    with DaprClient() as client:
        reply = client.invoke_method("c", "orders/3", data=b"from dapr", http_verb="PUT",
                                     metadata=(("x-token", "sdk"),))
        assert reply.status_code == 201, reply.status_code
        assert reply.data == b"PUT 3  sdk from dapr", reply.data
        reply = client.invoke_method("b", "echo", data=b"hello", content_type="text/plain")
        assert reply.data == b"echo:hello" and reply.content_type == "text/plain", (reply.data, reply.content_type)
    print("dapr http invoke ok")
""")


async def test_dapr_python_sdk_invoke_method_in_its_default_http_mode(mesh: Mesh) -> None:  # noqa: F811
    app, _, _ = grpc_app()
    host, port = mesh.a.http_address.rsplit(":", 1)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DAPR_")}
    env.update({"DAPR_HTTP_PORT": port, "DAPR_RUNTIME_HOST": host, "DAPR_GRPC_ENDPOINT": mesh.a.grpc_address})
    async with http_app(mesh.c_app_port), app.serve(f"127.0.0.1:{mesh.b_app_port}"):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DAPR_HTTP_INVOKER, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(child.communicate(), 90)
    assert child.returncode == 0, (out + err).decode()
    assert out.decode().strip().endswith("dapr http invoke ok")
