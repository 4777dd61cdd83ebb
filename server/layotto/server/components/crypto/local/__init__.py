"""Keys in a directory of PEM and JWK files (Dapr's ``crypto.dapr.localstorage``).

A key's name is its file's path below ``path`` (``rsa-private-key.pem``, ``keys/aes.json``),
as in Dapr. A directory is one key with versions: ``name`` is its newest file (natural order:
``v10`` after ``v9``) and ``name/version`` that file, so adding a file rotates the key. Files
are read on each use, so a new version is picked up without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.crypto import KeyStore, newest_version
from layotto.server.components.crypto.keys import Key, KeyFormatError, read_key
from layotto.server.errors import BackendError, KeyNotFound


def _directory(raw: str, where: str) -> Path:
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{where}: {path} is not a directory")
    return path


class LocalKeyStore(KeyStore):
    spec = ComponentSpec(
        type="local",
        building_block="crypto",
        description="Keys in a local directory: PEM files (.pem) and JWK files (.json), each one key; "
        "a sub-directory is one key whose files are its versions, the newest used to encrypt.",
        metadata=(
            MetadataField(
                "path", "Directory holding the key files (read on each use).", required=True, example="/etc/keys"
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._root = Path()

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._root = await asyncio.to_thread(_directory, str(metadata["path"]), f"crypto.{self.name}.metadata.path")

    def _find(self, name: str, field: str) -> Key:
        if not name or ".." in name.split("/") or name.startswith("/"):
            raise KeyNotFound(field, self.name, name)
        path = self._root / name
        if path.is_dir():
            version = newest_version(child.name for child in path.iterdir() if child.is_file())
            if version is None:
                raise KeyNotFound(field, self.name, name)
            key_name, path = name.rstrip("/"), path / version
        elif path.is_file():
            key_name, _, version = name.rpartition("/") if "/" in name else ("", "", "")
            key_name = key_name or name
        else:
            raise KeyNotFound(field, self.name, name)
        try:
            material = read_key(path.read_bytes(), path.name)
        except OSError as error:
            raise BackendError(self.name, f"cannot read key file {name!r}: {error.strerror}") from None
        except KeyFormatError as error:
            raise BackendError(self.name, f"key file {path.relative_to(self._root)} is not a key: {error}") from None
        return Key(key_name, version, material)

    async def key(self, name: str, field: str = "key_name") -> Key:
        return await asyncio.to_thread(self._find, name, field)
