"""Due jobs delivered to an app that speaks only HTTP (``app_protocol: http``), as daprd does it.

Each due job is one ``POST /job/<name>`` (the name percent-encoded) on the app's port, with the
job's data as daprd sends it: the ``Any`` it was scheduled with as Go's ``encoding/json`` writes it,
``{"type_url": "...", "value": "<base64 of the value bytes>"}`` (``null`` for a job without data),
``Content-Type: application/json``, plus ``dapr-api-token`` when ``APP_API_TOKEN`` is set and
``traceparent`` when tracing is on. A 2xx answer is a delivery; any other status, no answer within
``CALL_TIMEOUT_SECONDS`` or a broken connection is a failed one, and the job's failure policy
decides what follows (see runtime/jobs.py). An app that is not listening yet (it starts after
the runtime, it restarts) is asked again every 0.1 s doubling to 1 s within those seconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from urllib.parse import quote

import aiohttp

from layotto.server.appjobs import CALL_TIMEOUT_SECONDS
from layotto.server.errors import AppError, AppUnavailable
from layotto.server.http_app import HttpApp
from layotto.server.runtime.jobs import JobData
from layotto.tracing import current_traceparent

REFUSED_FIRST_WAIT_SECONDS = 0.1
REFUSED_MAX_WAIT_SECONDS = 1.0


def job_body(data: JobData | None) -> bytes:
    """The POST body for a job's ``data``: daprd's JSON of the ``Any`` (``null`` without data)."""
    if data is None:
        return b"null"
    answer = {"type_url": data.type_url, "value": base64.b64encode(data.value).decode()}
    return json.dumps(answer, separators=(",", ":")).encode()


class HttpAppJobs:
    """Delivers due jobs to the HTTP app at ``app_port`` (a :data:`~layotto.server.runtime.jobs.JobDeliverer`)."""

    def __init__(self, app_port: int, *, app_id: str, app_api_token: str = "") -> None:
        self._app = HttpApp(f"http://127.0.0.1:{app_port}", app_api_token)
        self._app_id = app_id

    async def deliver(self, name: str, data: JobData | None) -> None:
        """POST the job to the app. Raises AppUnavailable (no answer in time) or AppError (a non-2xx answer)."""
        url = f"{self._app.base_url}/job/{quote(name, safe='')}"
        headers = self._app.headers(**{"Content-Type": "application/json"})
        traceparent = current_traceparent()
        if traceparent:
            headers["traceparent"] = traceparent
        try:
            status, answer = await asyncio.wait_for(self._post(url, job_body(data), headers), CALL_TIMEOUT_SECONDS)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise AppUnavailable(self._app_id, f"POST /job/{name}: {error or type(error).__name__}") from error
        if not 200 <= status < 300:
            raise AppError.from_http(self._app_id, status, answer)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        wait = REFUSED_FIRST_WAIT_SECONDS
        deadline = time.monotonic() + CALL_TIMEOUT_SECONDS
        while True:
            try:
                async with self._app.session().post(url, data=body, headers=headers) as response:
                    return response.status, await response.read()
            except aiohttp.ClientConnectorError:  # not listening (yet): asked again within the call's time
                if time.monotonic() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 2, REFUSED_MAX_WAIT_SECONDS)

    async def aclose(self) -> None:
        await self._app.aclose()
