"""The final status of a served gRPC call, as a ``grpc.StatusCode`` name, on either transport."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

_NAMES_BY_NUMBER = {code.value[0]: code.name for code in grpc.StatusCode}


def status_name(context: Any, error: BaseException | None) -> str:
    """``OK``, ``NOT_FOUND``, ...: the code ``context`` was given (set_code, abort), else what ``error``
    means (None: ``OK``; a cancellation: ``CANCELLED``; anything else: ``UNKNOWN``)."""
    code = context.code()
    if code is None:
        if error is None:
            return "OK"
        return "CANCELLED" if isinstance(error, asyncio.CancelledError | GeneratorExit) else "UNKNOWN"
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # grpc.aio keeps the number given to set_code/abort
        return _NAMES_BY_NUMBER.get(code, "UNKNOWN")
    return "UNKNOWN"
