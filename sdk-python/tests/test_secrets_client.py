"""client.secrets against an in-process runtime with a local.file secret store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layotto.client import NotFound, SecretNotFound, StoreNotFound
from layotto.client.testing import test_runtime
from layotto.server import embedded_defaults
from layotto.server.config import ComponentConfig, RuntimeConfig


def with_secrets(path: Path) -> RuntimeConfig:
    path.write_text(json.dumps({"api-token": "t0k", "db": {"user": "app", "password": "pw"}}))
    stores = {"files": ComponentConfig("local.file", {"secretsFile": str(path), "multiValued": "true"})}
    return RuntimeConfig(components={**embedded_defaults().components, "secret_store": stores})


async def test_get_and_get_bulk(tmp_path: Path) -> None:
    async with test_runtime(with_secrets(tmp_path / "s.json")) as runtime, runtime.client() as client:
        assert await client.secrets.get("files", "db") == {"user": "app", "password": "pw"}
        assert await client.secrets.get_bulk("files") == {
            "api-token": {"api-token": "t0k"},
            "db": {"user": "app", "password": "pw"},
        }


async def test_missing_secret_and_unknown_store_are_named_errors(tmp_path: Path) -> None:
    async with test_runtime(with_secrets(tmp_path / "s.json")) as runtime, runtime.client() as client:
        with pytest.raises(SecretNotFound) as missing:
            await client.secrets.get("files", "nope")
        assert isinstance(missing.value, NotFound) and missing.value.code == "NOT_FOUND"
        with pytest.raises(StoreNotFound):
            await client.secrets.get("vault", "db")


def test_exception_tree_in_the_docs_is_the_modules() -> None:
    import layotto.client._errors as errors

    docstring = errors.__doc__ or ""
    tree = "\n".join(line[4:] for line in docstring[docstring.index("    LayottoError") :].rstrip().splitlines())
    docs = (Path(__file__).parents[2] / "docs" / "sdk.md").read_text()
    assert f"```text\n{tree}\n```" in docs
