"""Secrets from a JSON file (Dapr's and Layotto's local.file).

By default nested objects and arrays are flattened as Dapr does: object keys and array
indexes are joined by ``nestedSeparator``, and each leaf is a secret of one key:
``{"db": {"password": "p"}, "hosts": ["a", "b"]}`` serves ``db:password`` as
``{"db:password": "p"}``, ``hosts:0`` as ``{"hosts:0": "a"}`` and ``hosts:1``; an array of
objects gives ``servers:0:host``. With ``multiValued`` each top-level key is one secret whose
keys are its value flattened the same way below it (``db`` → ``{"password": "p"}``,
``hosts`` → ``{"0": "a", "1": "b"}``; Dapr drops a top-level array there), and a top-level
scalar is a secret of one key, its name.

Leaves that are not strings are served as JSON spells them (``5432``, ``true``, ``null``;
Dapr's Go formatting gives ``%!s(float64=5432)``). Two leaves flattening to one name (``"a:0"``
beside ``"a": [...]``) stop start-up with the name, where Dapr keeps the first it meets (in Go's
random map order) and silently skips the rest of the file. The file is read once, at
start-up, so a runtime serves the secrets it started with.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.secretstore import Secret, SecretStore


class DuplicateSecretKey(ValueError):
    """Two leaves of the file flatten to the same key."""


def flatten(value: Any, separator: str, parents: tuple[str, ...] = ()) -> dict[str, str]:
    """Leaves of nested JSON by path below ``parents``: object keys and array indexes joined by
    ``separator``; strings as they are, other scalars as JSON spells them.

    Raises :class:`DuplicateSecretKey` (naming the key) when two leaves have one path.
    """
    flat: dict[str, str] = {}
    _visit(value, separator, parents, flat)
    return flat


def _visit(value: Any, separator: str, path: tuple[str, ...], flat: dict[str, str]) -> None:
    if isinstance(value, dict):
        children: list[tuple[str, Any]] = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(str(index), item) for index, item in enumerate(value)]
    else:
        key = separator.join(path)
        if key in flat:
            raise DuplicateSecretKey(key)
        flat[key] = value if isinstance(value, str) else json.dumps(value)
        return
    for name, item in children:
        _visit(item, separator, (*path, name), flat)


def read_secrets(file: str, separator: str, multi_valued: bool, where: str) -> dict[str, Secret]:
    """The secrets of the JSON ``file`` by name, flattened as the module says.

    Raises :class:`ConfigError` starting with ``where`` when the file cannot be read, is not a
    JSON object, nests too deeply, or has two values for one secret key.
    """
    path = Path(file).expanduser()
    try:
        content = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"{where}: {path} is not valid JSON: {error}") from None
    except RecursionError:
        raise ConfigError(f"{where}: {path} nests too deeply") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{where}: {path} must hold a JSON object")
    try:
        if multi_valued:
            return {
                name: flatten(value, separator, () if isinstance(value, dict | list) else (name,))
                for name, value in content.items()
            }
        return {name: {name: value} for name, value in flatten(content, separator).items()}
    except DuplicateSecretKey as error:
        raise ConfigError(
            f"{where}: {path} has two values for the secret key {error.args[0]!r} (keys joined by {separator!r})"
        ) from None
    except RecursionError:
        raise ConfigError(f"{where}: {path} nests too deeply") from None


class LocalFileSecretStore(SecretStore):
    spec = ComponentSpec(
        type="local.file",
        building_block="secret_store",
        description="Serves the secrets of a JSON file, read at start-up. For development and tests: "
        "the file sits in plain text beside the runtime.",
        metadata=(
            MetadataField("secretsFile", "Path of the JSON file.", required=True, example="secrets.json"),
            MetadataField("nestedSeparator", "Joins the keys of nested objects and array indexes.", default=":"),
            MetadataField(
                "multiValued",
                "Each top-level key is one secret holding its nested keys, instead of one secret per leaf.",
                type=bool,
                default=False,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._secrets: dict[str, Secret] = {}

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._secrets = await asyncio.to_thread(
            read_secrets,
            str(metadata["secretsFile"]),
            str(metadata["nestedSeparator"]) or ":",  # empty means the default, as in Dapr
            bool(metadata["multiValued"]),
            f"secret_store.{self.name}.metadata.secretsFile",
        )

    async def get(self, name: str) -> Secret | None:
        secret = self._secrets.get(name)
        return None if secret is None else dict(secret)

    async def bulk_get(self) -> dict[str, Secret]:
        return {name: dict(secret) for name, secret in self._secrets.items()}
