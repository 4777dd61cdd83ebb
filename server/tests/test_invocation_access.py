"""Access control of service invocation (Dapr's ``accessControl``) and the hop token, with real
processes: runtime ``a`` (no app) calls ``b`` (an HTTP app), whose config holds the policies; both
share ``invoke_token``. A client dialling b's sidecar with hop metadata stands in for a forged hop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from server_helpers import ServerProcess, free_port, start_server
from test_invocation import http_app

from layotto.client import PermissionDenied, RuntimeClient
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from layotto.server.components.base import ConfigError
from layotto.server.config import from_mapping, load, with_dapr_components
from layotto.server.masking import masked
from layotto.server.runtime.access_control import parse_access_control

TOKEN = "s3cret-token"
B_CONFIG = """\
app_id: b
app_protocol: http
app_port: {port}
invoke_token: {token}
access_control:
  defaultAction: deny
  trustDomain: public
  policies:
    - appId: a
      defaultAction: deny
      operations:
        - {{name: /orders/*, httpVerb: [GET, POST], action: allow}}
        - {{name: /orders/7, httpVerb: ["*"], action: deny}}
    - appId: x
      defaultAction: allow
"""


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    b_app_port: int


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("access")
    port = free_port()
    (root / "b.yaml").write_text(B_CONFIG.format(port=port, token=TOKEN))
    b = start_server("-c", str(root / "b.yaml"), data_dir=root / "b")
    (root / "a.yaml").write_text(
        f"app_id: a\ninvoke_token: {TOKEN}\nname_resolution:\n  type: static\n  apps:\n    b: [{b.grpc_address}]\n"
    )
    a = start_server("-c", str(root / "a.yaml"), data_dir=root / "a")
    yield Pair(a, b, port)
    for server in (a, b):
        server.process.kill()
        server.process.wait()


async def test_policies_decide_per_caller_operation_and_verb(pair: Pair) -> None:
    async with http_app(pair.b_app_port) as seen, RuntimeClient(pair.a.grpc_address) as client:
        assert (await client.invoke("b", "orders/1", verb="GET")).status == 201
        assert (await client.invoke("b", "orders/2")).status == 201  # a gRPC caller's verb NONE matches any list
        assert "layotto-invoke-token" not in seen[-1].headers and seen[-1].headers["dapr-caller-app-id"] == "a"
        for method, verb in (("orders/1", "PUT"), ("orders/7", "GET"), ("missing", "GET")):
            with pytest.raises(PermissionDenied) as denied:
                await client.invoke("b", method, verb=verb)
            assert denied.value.reason == "ACCESS_DENIED" and denied.value.code == "PERMISSION_DENIED"
            assert f"app 'a' may not call {verb} /{method}: refused by the app's access control" in str(denied.value)
            assert denied.value.metadata == {"caller_app_id": "a", "operation": f"{verb} /{method}"}
        url = f"http://{pair.a.http_address}/v1.0/invoke/b/method/orders/7"
        async with aiohttp.ClientSession() as http, http.get(url) as reply:
            body = await reply.json()
            assert reply.status == 403 and body["details"][0]["reason"] == "ACCESS_DENIED", body


async def hop(pair: Pair, caller: str, token: str | None) -> grpc.aio.AioRpcError | None:
    """Dial b's sidecar as if a sidecar forwarded a call of ``caller``; the error, or None when served."""
    metadata = [("layotto-invoke-hop", "1"), ("layotto-caller-app-id", caller)]
    if token is not None:
        metadata.append(("layotto-invoke-token", token))
    request = invoke_pb2.InvokeServiceRequest(id="b", message={"method": "missing", "http_extension": {"verb": 1}})
    async with grpc.aio.insecure_channel(pair.b.grpc_address) as channel:
        try:
            await dapr_pb2_grpc.DaprStub(channel).InvokeService(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error
    return None


async def test_a_hop_without_the_token_cannot_claim_a_caller_id(pair: Pair) -> None:
    async with http_app(pair.b_app_port):
        for token in (None, "guess"):
            forged = await hop(pair, "x", token)
            assert forged is not None and forged.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "does not carry this deployment's invoke token" in (forged.details() or "")
        trusted = await hop(pair, "x", TOKEN)  # x's policy allows everything: the app's own 404 comes back
        assert trusted is not None and trusted.code() is grpc.StatusCode.NOT_FOUND, trusted
        stranger = await hop(pair, "nobody", TOKEN)  # no policy: the global defaultAction (deny)
        assert stranger is not None and stranger.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "app 'nobody' may not call GET /missing" in (stranger.details() or "")


def test_access_control_needs_the_token_and_is_checked_key_by_key() -> None:
    with pytest.raises(ConfigError, match="access_control: an access control needs invoke_token"):
        from_mapping({"app_id": "b", "access_control": {"defaultAction": "deny"}})
    cases = [
        ({"defaultAction": "maybe"}, "acl.defaultAction: expected allow or deny"),
        ({"policies": [{"defaultAction": "allow"}]}, "acl.policies[0].appId: required"),
        ({"policies": [{"appId": "a", "operations": [{"name": "orders"}]}]}, "acl.policies[0].operations[0].name"),
        ({"policies": [{"appId": "a", "operations": [{"name": "/o", "httpVerb": "GET"}]}]}, "httpVerb: expected"),
        ({"policies": [{"appId": "a"}, {"appId": "a"}]}, "acl.policies[1].appId: 'a' has a policy already"),
        (  # a typo'd verb matched no call: the deny rule was accepted and denied nothing
            {"policies": [{"appId": "a", "operations": [{"name": "/o", "httpVerb": ["DELTE"], "action": "deny"}]}]},
            "acl.policies[0].operations[0].httpVerb: unknown verb 'DELTE' \\(known: GET, HEAD,",
        ),
        ({"policies": [{"appId": "a", "operations": [{"name": "/o", "httpVerb": []}]}]}, "httpVerb: expected"),
        ({"other": 1}, "acl.other: unknown key"),
    ]
    for raw, message in cases:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_access_control(raw, "acl")


def test_wildcards_and_the_longest_matching_operation() -> None:
    acl = parse_access_control(
        {
            "policies": [
                {
                    "appId": "a",
                    "defaultAction": "deny",
                    "operations": [
                        {"name": "/v1/**", "httpVerb": ["*"], "action": "allow"},
                        {"name": "/v1/admin/*", "httpVerb": ["*"], "action": "deny"},
                    ],
                }
            ]
        },
        "acl",
    )
    assert acl.allows("a", "v1/users/7/orders", "GET") and acl.allows("a", "/v1/admin", "GET")
    assert not acl.allows("a", "v1/admin/keys", "POST") and not acl.allows("a", "v2/x", "GET")
    assert acl.allows("someone-else", "anything", "GET")  # defaultAction absent: allow
    exact = parse_access_control(
        {"policies": [{"appId": "a", "operations": [{"name": "/o/*"}, {"name": "/o/7", "action": "deny"}]}]}, "acl"
    )
    assert exact.allows("a", "o/6", "GET") and not exact.allows("a", "o/7", "GET")  # the literal name wins


BYPASSES = ["x/../v1/admin/keys", "../v1/admin/keys", "v1/./admin/keys", "v1/admin/keys?x=1", "v1/admin/keys#f"]
BYPASSES += ["v1/%61dmin/keys", "v1/admin%2Fkeys", "v1/x/%2e%2e/admin/keys"]


@pytest.mark.parametrize("method", BYPASSES)
def test_a_method_is_matched_as_the_path_the_app_gets(method: str) -> None:
    """An HTTP app is sent the method as a URL path (dot segments removed, percent-decoded, no query or
    fragment): a policy is matched against that path, so ``x/../v1/admin/keys`` cannot pass as another."""
    acl = parse_access_control(
        {"policies": [{"appId": "a", "operations": [{"name": "/v1/admin/*", "httpVerb": ["*"], "action": "deny"}]}]},
        "acl",
    )
    assert acl.allows("a", "v1/users", "GET")
    assert not acl.allows("a", method, "GET"), method


def test_the_token_is_not_in_the_config_repr() -> None:
    config = from_mapping({"app_id": "b", "invoke_token": TOKEN})
    assert config.invoke_token == TOKEN and TOKEN not in repr(config)
    assert masked(config.to_dict())["invoke_token"] == "****"  # as --print-config shows it


MANIFEST = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: appconfig}
spec:
  accessControl:
    defaultAction: deny
    policies: [{appId: a, defaultAction: allow}]
"""


def test_a_dapr_configuration_manifest_gives_the_access_control(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "config.yaml").write_text(MANIFEST)
    (tmp_path / "b.yaml").write_text(f"app_id: b\ncomponents_path: {tmp_path / 'manifests'}\ninvoke_token: t\n")
    access = with_dapr_components(load(tmp_path / "b.yaml")).access_control
    assert access is not None and access.allows("a", "x", "GET") and not access.allows("c", "x", "GET")
    (tmp_path / "b.yaml").write_text(f"app_id: b\ncomponents_path: {tmp_path / 'manifests'}\n")
    with pytest.raises(ConfigError, match="components_path: an access control needs invoke_token"):
        with_dapr_components(load(tmp_path / "b.yaml"))


def test_an_app_id_with_control_characters_is_invalid_naming_the_field() -> None:
    from layotto.server.errors import InvalidArgument
    from layotto.server.runtime.invocation import InvokeRequest

    for app_id in ("b\x00", "b\nc", "\x7f"):
        with pytest.raises(InvalidArgument) as refused:
            InvokeRequest(app_id, "echo").validate()
        assert refused.value.field == "id"
