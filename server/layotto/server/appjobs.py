"""Due jobs delivered to the application through Dapr's AppCallback.

Each due job is one ``OnJobEventAlpha1`` call (``AppCallbackAlpha``, as daprd makes it) with
the job's name, its data (the ``Any`` it was scheduled with) and the method ``job/<name>``;
an app that answers UNIMPLEMENTED there is asked through the stable ``AppCallback.OnJobEvent``.
An app that cannot be reached yet (it starts after the runtime, it restarts) is waited for
within the call's time (``wait_for_ready``; the channel tries to connect again at least every
second, on a subchannel of its own rather than one shared with the other callback channels,
whose backoff has grown while the app was away). An error answer, or no answer within
``CALL_TIMEOUT_SECONDS``, is a failed delivery: the job's failure policy decides what follows
(see runtime/jobs.py). Layotto's AppCallback has no job
RPCs, so Dapr's is asked whatever ``app_callback_protocol`` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_appcallback_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc as dapr_appcallback_grpc
from layotto.server.api_token import sending_token
from layotto.server.errors import AppError, AppUnavailable
from layotto.server.runtime.jobs import JobData

if TYPE_CHECKING:
    from layotto.tracing import Tracing

#: below the scheduler's 30 s lease, so a slow app never has its job claimed by another runtime meanwhile
CALL_TIMEOUT_SECONDS = 20.0
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class AppJobs:
    """Delivers due jobs to the app at ``address`` (a :data:`~layotto.server.runtime.jobs.JobDeliverer`)."""

    def __init__(self, address: str, *, app_id: str, tracing: Tracing | None = None, app_api_token: str = "") -> None:
        self._address = address
        self._app_id = app_id
        interceptors = tracing.client_interceptors(address) if tracing is not None else None
        self._channel = grpc.aio.insecure_channel(
            address, options=_CHANNEL_OPTIONS, interceptors=sending_token(app_api_token, interceptors)
        )
        self._alpha = dapr_appcallback_grpc.AppCallbackAlphaStub(self._channel)
        self._stable = dapr_appcallback_grpc.AppCallbackStub(self._channel)

    async def deliver(self, name: str, data: JobData | None) -> None:
        """Call the app's job callback. Raises AppUnavailable (no answer) or AppError (an error answer)."""
        request = dapr_appcallback_pb2.JobEventRequest(name=name, method=f"job/{name}")
        if data is not None:  # Dapr's messages live in their own descriptor pool: fields, not an Any of another's
            request.data.type_url = data.type_url
            request.data.value = data.value
        try:
            try:
                await self._alpha.OnJobEventAlpha1(request, timeout=CALL_TIMEOUT_SECONDS, wait_for_ready=True)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                await self._stable.OnJobEvent(request, timeout=CALL_TIMEOUT_SECONDS, wait_for_ready=True)
        except grpc.aio.AioRpcError as error:
            detail = f"OnJobEvent({name}): {error.code().name}: {error.details()}"
            if error.code() in _UNREACHABLE:
                raise AppUnavailable(self._app_id, f"{self._address}: {detail}") from error
            raise AppError(self._app_id, detail, status=error.code().name) from error

    async def aclose(self) -> None:
        await self._channel.close(None)
