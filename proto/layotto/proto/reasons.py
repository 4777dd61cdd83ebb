"""The error reasons of the contract, read from ``error_reasons.json`` (shipped beside it).

Both the runtime (which maps each error to a status with this table alone) and the SDK
(which raises one exception class per reason) read this list, so neither can name a
reason the other lacks without a test failing.

``REASONS`` maps a reason (``"ETAG_MISMATCH"``) to its :class:`Reason`: the gRPC status
code name (``"ABORTED"``), the HTTP status (409) and a one-line summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType
from typing import Any

__all__ = ["ERROR_DOMAIN", "REASONS", "Reason"]


@dataclass(frozen=True)
class Reason:
    """One entry of the list: ``grpc`` is a ``grpc.StatusCode`` member name, ``http`` a status number."""

    name: str
    grpc: str
    http: int
    summary: str


def _load() -> tuple[str, dict[str, Reason]]:
    data: dict[str, Any] = json.loads(files(__package__).joinpath("error_reasons.json").read_text("utf-8"))
    reasons = {name: Reason(name, e["grpc"], int(e["http"]), e["summary"]) for name, e in data["reasons"].items()}
    return str(data["domain"]), reasons


ERROR_DOMAIN, _REASONS = _load()
REASONS = MappingProxyType(_REASONS)
