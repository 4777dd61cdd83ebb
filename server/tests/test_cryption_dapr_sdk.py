"""Dapr's own Python SDK encrypts and decrypts through a `layotto serve` (in a child process,
see test_dapr_sdk.py), with keys of a crypto.dapr.localstorage component."""

from __future__ import annotations

import textwrap
from pathlib import Path

from crypto_keys import write_key_dir
from server_helpers import start_server
from test_cryption_process import MANIFEST
from test_dapr_sdk import run_dapr_app

DAPR_CRYPTO_APP = textwrap.dedent("""
    import asyncio, os
    from dapr.clients import DaprClient
    from dapr.aio.clients import DaprClient as AsyncDaprClient
    from dapr.clients.grpc._crypto import EncryptOptions, DecryptOptions

    plain = os.urandom(300_000)
    with DaprClient() as client:
        for key, algorithm, cipher in (("aes.json", "A256KW", "aes-gcm"), ("rsa.pem", "RSA", "chacha20-poly1305")):
            options = EncryptOptions(component_name="keys", key_name=key, key_wrap_algorithm=algorithm,
                                     data_encryption_cipher=cipher)
            sealed = client.encrypt(data=plain, options=options).read()
            assert sealed.startswith(b"dapr.io/enc/v1\\n"), sealed[:40]
            opened = client.decrypt(data=sealed, options=DecryptOptions(component_name="keys")).read()
            assert opened == plain
        tampered = bytearray(sealed)
        tampered[-1] ^= 1
        try:
            client.decrypt(data=bytes(tampered), options=DecryptOptions(component_name="keys")).read()
            raise SystemExit("tampered data decrypted")
        except Exception as error:
            assert "does not verify" in str(error), (type(error), error)

    async def main():
        async with AsyncDaprClient() as client:
            options = EncryptOptions(component_name="keys", key_name="aes.json", key_wrap_algorithm="AES")
            sealed = await (await client.encrypt(data=b"async", options=options)).read()
            opened = await client.decrypt(data=sealed, options=DecryptOptions(component_name="keys"))
            assert await opened.read() == b"async"

    asyncio.run(main())
    print("dapr crypto ok")
""")


def test_dapr_python_sdk_encrypt_and_decrypt(tmp_path: Path) -> None:
    write_key_dir(tmp_path / "keys")
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "keys.yaml").write_text(MANIFEST.format(path=tmp_path / "keys"))
    server = start_server("--components-path", str(tmp_path / "components"), data_dir=tmp_path / "rt")
    try:
        run_dapr_app(server, DAPR_CRYPTO_APP, "dapr crypto ok")
    finally:
        server.terminate()
