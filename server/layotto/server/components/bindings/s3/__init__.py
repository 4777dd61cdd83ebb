"""Dapr's ``bindings.aws.s3``: objects of one bucket, on the File API's ``s3`` store
(:mod:`layotto.server.components.bindings.files` says what each operation does).

``list`` takes Dapr's request data, a JSON object ``{"prefix", "marker", "maxResults"}`` (each
optional), and answers the page as S3's ListObjects output does in Dapr's binding: ``Contents``
(``Key``, ``Size``, ``LastModified``), ``IsTruncated``, ``NextMarker`` (the marker of the next page).
"""

from __future__ import annotations

import json
from typing import Any

from layotto.server.components.base import ComponentSpec, Feature
from layotto.server.components.bindings import BindingRequest, BindingResponse
from layotto.server.components.bindings.files import MAX_GET_BYTES, OPERATIONS, FileBinding, s3_listing
from layotto.server.components.file import MAX_PAGE_SIZE, check_prefix
from layotto.server.components.file.s3 import S3FileStore
from layotto.server.errors import InvalidArgument


def _list_request(data: bytes) -> dict[str, Any]:
    if not data.strip():
        return {}
    try:
        request = json.loads(data)
    except ValueError:
        raise InvalidArgument("data", "expected a JSON object {prefix, marker, maxResults}") from None
    if not isinstance(request, dict):
        raise InvalidArgument("data", "expected a JSON object {prefix, marker, maxResults}")
    for key in ("prefix", "marker"):
        if not isinstance(request.get(key, ""), str):
            raise InvalidArgument(f"data.{key}", "expected a string")
    size = request.get("maxResults", MAX_PAGE_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument("data.maxResults", f"expected an integer between 1 and {MAX_PAGE_SIZE}")
    return request


class S3Binding(FileBinding):
    store_class = S3FileStore
    name_key = "key"
    spec = ComponentSpec(
        type="s3",
        building_block="bindings",
        description="Objects of one bucket of an S3-compatible store (Dapr's bindings.aws.s3), on the File API's "
        "s3 store: request metadata `key` names the object (`create` without it: a new UUID), "
        "`decodeBase64: \"true\"` decodes `create`'s data; `list` pages with Dapr's `{prefix, marker, maxResults}`.",
        features=frozenset({Feature.OUTPUT_BINDING}),
        operations=OPERATIONS,
        metadata=(*S3FileStore.spec.metadata, MAX_GET_BYTES),
    )

    async def list_files(self, request: BindingRequest) -> BindingResponse:
        listing = _list_request(request.data)
        prefix = check_prefix(listing.get("prefix", ""), "data.prefix")
        size = int(listing.get("maxResults", MAX_PAGE_SIZE))
        page = await self.store.list(prefix, size, str(listing.get("marker", "")))
        bucket = str(self.store.metadata.get("bucket", ""))
        return BindingResponse(json.dumps(s3_listing(page.files, listing, page.is_truncated, bucket)).encode())
