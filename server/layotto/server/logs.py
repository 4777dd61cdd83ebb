"""The runtime's log lines: text or JSON, secrets masked, levels changeable while it runs.

* ``log_format: text`` (the default): ``TIME LEVEL LOGGER: MESSAGE``.
* ``log_format: json``: one JSON object a line, with ``time`` (UTC, ISO 8601, milliseconds),
  ``level``, ``logger``, ``message``, ``trace_id`` and ``span_id`` (hex, of the OpenTelemetry span
  current where the line was logged, when tracing is on and a span is current) and
  ``exception`` (the traceback, when one is logged).

Both go through :func:`~layotto.server.masking.mask_text`: no password is written.

Levels change while the runtime runs through ``/actuator/loggers`` (:mod:`layotto.server.log_levels`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from layotto.server.masking import MaskingFormatter, mask_text

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
"""The level names, lowest first."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def current_span_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the OpenTelemetry span current here, or None.

    OpenTelemetry is only looked at when something imported it (tracing configured): with
    tracing off no span can be current, and logging does not load it.
    """
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:
        return None
    context = otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, trace_id/span_id, exception; passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        span = current_span_ids()
        if span is not None:
            line["trace_id"], line["span_id"] = span
        if record.exc_info:
            line["exception"] = mask_text(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = mask_text(record.exc_text)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``)."""
    return JsonFormatter() if log_format == "json" else MaskingFormatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger writes to stderr at ``level`` in ``log_format``; called again, it replaces its handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler], force=True)
