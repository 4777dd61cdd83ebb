"""Secrets kept out of what the runtime shows: ``--print-config``, error messages and logs.

Two rules, applied together:

* a metadata key that names a secret (:func:`is_secret_key`: ``redisPassword``, ``token``,
  ``clientSecret``, ``tlsKey``, ``auth``, ``pass``, ``privateKeyFile``, ...) has its whole value
  replaced by :data:`MASK`; every component metadata field declared with ``secret=True`` matches
  this rule (a test checks it). The references of a ``secret_ref`` list (which secret of which
  store) are names, not secrets, and stay shown;
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
#: the last word of a key that names a secret: ``tlsKey``, ``auth``, ``pass``, ``sessionToken``
_SECRET_LAST_WORDS = frozenset(
    {"key", "token", "auth", "authorization", "pass", "passphrase", "password", "passwd", "pwd", "secret"}
    | {"credential", "credentials", "apikey", "jwt"}
)
#: words before a last "key" that make it the name of a stored key, not a secret: ``listKey``
_NAMED_KEYS = frozenset({"list", "stream", "hash", "sort", "partition", "routing", "primary", "row", "cache"})
#: a word that makes any key a secret wherever it stands: ``privateKeyFile``, ``passwordFile``
_SECRET_WORDS = frozenset({"private", "password", "passwd", "passphrase", "credential", "credentials"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
#: keys whose mapping names secrets (store, secret, key) rather than holding them
_REFERENCE_KEYS = frozenset({"secret_ref", "secretKeyRef"})
_URL_USERINFO = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)(?=@)", re.IGNORECASE)
_GO_DSN = re.compile(r"(?P<head>(?:^|[\s'\"(=])[^:@/\s'\"(=]*:)(?P<secret>\S+?)(?=@(?:tcp|unix)\()")
_PASSWORD_PAIR = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,)'\"]+)",
    re.IGNORECASE,
)


def is_secret_key(name: str) -> bool:
    """Whether a metadata or config key names a secret (its value is never shown).

    A key is one when it ends with a secret's name (``redisPassword``, ``clientSecret``,
    ``tlsKey``, ``auth``, ``pass``) or holds a word only secrets have (``privateKeyFile``);
    ``keyPrefix``, ``listKey`` or ``secretStore`` (a namespace, a stored key's name, a store's
    name) is not.
    """
    if _SECRET_KEY.search(name.replace("-", "_")):
        return True
    words = [word.lower() for word in _WORD.findall(name)]
    if not _SECRET_WORDS.isdisjoint(words):
        return True
    if words[-2:-1] and words[-1] == "key" and words[-2] in _NAMED_KEYS:
        return False
    return bool(words) and words[-1] in _SECRET_LAST_WORDS


def mask_text(text: str) -> str:
    """``text`` with every password written inside it replaced by :data:`MASK`."""
    for pattern in (_URL_USERINFO, _GO_DSN, _PASSWORD_PAIR):
        text = pattern.sub(lambda m: f"{m['head']}{MASK}", text)
    return text


def masked(value: Any) -> Any:
    """A copy of a JSON-like value (mappings, lists, strings) with its secrets masked."""
    if isinstance(value, Mapping):
        return {key: _masked_entry(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def _masked_entry(key: str, item: Any) -> Any:
    if key in _REFERENCE_KEYS:
        return item
    if isinstance(item, str) and item and is_secret_key(key):
        return MASK
    return masked(item)


class MaskingFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks included) never show a password (see :func:`mask_text`)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))
