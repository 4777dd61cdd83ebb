"""Secret store cases (Dapr's secretstores conformance, plus errors).

The store under test must hold Dapr's fixture: the secrets ``conftestsecret`` = ``abcd`` and
``secondsecret`` = ``efgh``, each a secret of one key named like it (for local.file, the
JSON file ``{"conftestsecret": "abcd", "secondsecret": "efgh"}``).
"""

from __future__ import annotations

import grpc

from layotto.conformance.model import Case, CaseContext, check

FIXTURE = {"conftestsecret": "abcd", "secondsecret": "efgh"}


def _rpcs(*names: str) -> tuple[str, ...]:
    return tuple(
        f"{service}/{name}"
        for service in ("spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr")
        for name in names
    )


async def _get(ctx: CaseContext) -> None:
    response = await ctx.call("GetSecret", ctx.api.GetSecretRequest(store_name=ctx.component, key="conftestsecret"))
    check(dict(response.data) == {"conftestsecret": "abcd"}, f"GetSecret conftestsecret: got {dict(response.data)}")


async def _bulk_get(ctx: CaseContext) -> None:
    response = await ctx.call("GetBulkSecret", ctx.api.GetBulkSecretRequest(store_name=ctx.component))
    found = {name: dict(secret.secrets) for name, secret in response.data.items()}
    for name, value in FIXTURE.items():
        check(
            found.get(name) == {name: value},
            f"GetBulkSecret: {name} should be {{{name}: {value}}}, got {found.get(name)}",
        )


async def _get_missing(ctx: CaseContext) -> None:
    request = ctx.api.GetSecretRequest(store_name=ctx.component, key=ctx.key("no-such-secret"))
    await ctx.expect_error("GetSecret", request, grpc.StatusCode.NOT_FOUND, mentions="no-such-secret")


async def _get_empty_name(ctx: CaseContext) -> None:
    request = ctx.api.GetSecretRequest(store_name=ctx.component, key="")
    await ctx.expect_error("GetSecret", request, grpc.StatusCode.INVALID_ARGUMENT, mentions="key")


SECRET_CASES = [
    Case("secret-get", "secret_store", "GetSecret answers the fixture's secret", _rpcs("GetSecret"), _get),
    Case(
        "secret-bulk-get", "secret_store", "GetBulkSecret holds every fixture secret", _rpcs("GetBulkSecret"), _bulk_get
    ),
    Case(
        "secret-get-missing", "secret_store", "an unknown secret is NOT_FOUND, named", _rpcs("GetSecret"), _get_missing
    ),
    Case(
        "secret-get-empty-name",
        "secret_store",
        "an empty name is INVALID_ARGUMENT naming key",
        _rpcs("GetSecret"),
        _get_empty_name,
    ),
]
