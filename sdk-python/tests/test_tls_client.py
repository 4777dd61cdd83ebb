"""RuntimeClient(tls=...): the options that configure a TLS connection (the calls over TLS and mutual
TLS against a real runtime are in server/tests/test_tls.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from layotto.client import RuntimeClient, TlsConfig


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="certificate_chain and private_key go together"):
        RuntimeClient("127.0.0.1:1", tls=TlsConfig(certificate_chain=b"-----BEGIN CERTIFICATE-----"))


def test_server_name_checked_for_unix_addresses_and_overrides() -> None:
    assert TlsConfig().channel_options("unix:/run/l.sock") == [("grpc.ssl_target_name_override", "localhost")]
    assert TlsConfig(server_name="rt").channel_options("127.0.0.1:1") == [("grpc.ssl_target_name_override", "rt")]
    assert TlsConfig().channel_options("127.0.0.1:1") == []


def test_from_files_reads_pem_files(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"ca")
    (tmp_path / "c.pem").write_bytes(b"cert")
    (tmp_path / "k.pem").write_bytes(b"key")
    tls = TlsConfig.from_files(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem", server_name="rt")
    assert tls == TlsConfig(b"ca", b"cert", b"key", "rt")
    assert TlsConfig.from_files() == TlsConfig()
    with pytest.raises(FileNotFoundError):
        TlsConfig.from_files(tmp_path / "missing.pem")


async def test_tls_true_uses_the_system_cas() -> None:
    async with RuntimeClient("127.0.0.1:1", tls=True) as client:
        assert client.address == "127.0.0.1:1"
