"""Secrets from a JSON file (Dapr's and Layotto's local.file).

By default nested objects are flattened, their keys joined by ``nestedSeparator``, and each
leaf is a secret of one key: ``{"db": {"password": "p"}}`` serves the secret ``db:password``
as ``{"db:password": "p"}``. With ``multiValued`` each top-level key is one secret whose
nested keys are its key/value pairs (flattened the same way below the first level).
The file is read once, at start-up, so a runtime serves the secrets it started with.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.secretstore import Secret, SecretStore


def flatten(value: Any, separator: str, prefix: str = "") -> dict[str, str]:
    """Leaves of nested JSON by joined path; scalars become strings as JSON spells them."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(flatten(item, separator, f"{prefix}{separator}{key}" if prefix else str(key)))
        return flat
    if isinstance(value, str):
        return {prefix: value}
    return {prefix: json.dumps(value)}


def read_secrets(file: str, separator: str, multi_valued: bool, where: str) -> dict[str, Secret]:
    path = Path(file).expanduser()
    try:
        content = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"{where}: {path} is not valid JSON: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{where}: {path} must hold a JSON object")
    if multi_valued:
        return {
            str(name): flatten(value, separator, "" if isinstance(value, dict) else name)
            for name, value in content.items()
        }
    return {name: {name: value} for name, value in flatten(content, separator).items()}


class LocalFileSecretStore(SecretStore):
    spec = ComponentSpec(
        type="local.file",
        building_block="secret_store",
        description="Serves the secrets of a JSON file, read at start-up. For development and tests: "
        "the file sits in plain text beside the runtime.",
        metadata=(
            MetadataField("secretsFile", "Path of the JSON file.", required=True, example="secrets.json"),
            MetadataField("nestedSeparator", "Joins the keys of nested objects.", default=":"),
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
            str(metadata["nestedSeparator"]),
            bool(metadata["multiValued"]),
            f"secret_store.{self.name}.metadata.secretsFile",
        )

    async def get(self, name: str) -> Secret | None:
        secret = self._secrets.get(name)
        return None if secret is None else dict(secret)

    async def bulk_get(self) -> dict[str, Secret]:
        return {name: dict(secret) for name, secret in self._secrets.items()}
