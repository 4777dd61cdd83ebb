"""Secrets kept out of what the runtime shows: ``--print-config``, error messages and logs.

Two rules, applied together:

* a metadata key that names a secret (:func:`is_secret_key`: ``redisPassword``, ``token``,
  ``clientSecret``, ...) has its whole value replaced by :data:`MASK`; every component
  metadata field declared with ``secret=True`` matches this rule (a test checks it);
* a password inside a value or a message is replaced where it is written the usual ways:
  URL user info (``amqp://user:pw@host``), a Go MySQL DSN (``user:pw@tcp(host)``) and
  ``password=pw`` (libpq, query strings).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "****"

_SECRET_KEY = re.compile(
    r"(password|passwd|pwd|secret|token|api_?key|access_?key|secret_?key|master_?key|private_?key|credentials?)$",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)(?=@)", re.IGNORECASE)
_GO_DSN = re.compile(r"(?P<head>(?:^|[\s'\"(=])[^:@/\s'\"(=]*:)(?P<secret>\S+?)(?=@(?:tcp|unix)\()")
_PASSWORD_PAIR = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,)'\"]+)",
    re.IGNORECASE,
)


def is_secret_key(name: str) -> bool:
    """Whether a metadata or config key names a secret (its value is never shown)."""
    return bool(_SECRET_KEY.search(name.replace("-", "_")))


def mask_text(text: str) -> str:
    """``text`` with every password written inside it replaced by :data:`MASK`."""
    for pattern in (_URL_USERINFO, _GO_DSN, _PASSWORD_PAIR):
        text = pattern.sub(lambda m: f"{m['head']}{MASK}", text)
    return text


def masked(value: Any) -> Any:
    """A copy of a JSON-like value (mappings, lists, strings) with its secrets masked."""
    if isinstance(value, Mapping):
        return {
            key: MASK if isinstance(item, str) and item and is_secret_key(str(key)) else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


class MaskingFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks included) never show a password (see :func:`mask_text`)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))
