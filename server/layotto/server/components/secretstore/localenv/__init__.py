"""Secrets from the runtime's environment variables (Dapr's and Layotto's local.env)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.secretstore import Secret, SecretStore


class LocalEnvSecretStore(SecretStore):
    spec = ComponentSpec(
        type="local.env",
        building_block="secret_store",
        description="Serves the runtime process's environment variables as secrets, each a secret of one "
        "key named like the variable. For development: every variable (or every one under prefix) is readable.",
        metadata=(
            MetadataField(
                "prefix",
                "Serve only variables whose names start with this; the secrets are named without it.",
                default="",
                example="APP_SECRET_",
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._prefix = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._prefix = str(metadata["prefix"])

    async def get(self, name: str) -> Secret | None:
        value = os.environ.get(self._prefix + name)
        return None if value is None else {name: value}

    async def bulk_get(self) -> dict[str, Secret]:
        found = {}
        for variable, value in os.environ.items():
            if variable.startswith(self._prefix) and len(variable) > len(self._prefix):
                name = variable[len(self._prefix) :]
                found[name] = {name: value}
        return found
