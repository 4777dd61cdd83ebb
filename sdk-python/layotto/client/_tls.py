"""TLS of the connection to the runtime: the CA that signed its certificate, and the client's own (mTLS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True)
class TlsConfig:
    """How ``RuntimeClient(tls=...)`` connects over TLS; every certificate and key is PEM bytes.

    ``root_certificates``: the CA certificates the runtime's certificate must chain to (None: the
    system's). ``certificate_chain`` and ``private_key``: the client's certificate, for a runtime
    that requires one (mutual TLS). ``server_name``: the name the runtime's certificate must hold,
    when it is not the address's host (a ``unix:`` address has none: the runtime's certificate is
    then checked against ``localhost`` unless this is set).
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
    ) -> TlsConfig:
        """The config of PEM files (None: not given); raises OSError when a file cannot be read."""

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca_file), read(cert_file), read(key_file), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials of this config. Raises ValueError when only one of
        ``certificate_chain`` and ``private_key`` is given."""
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("tls: certificate_chain and private_key go together (mutual TLS) or not at all")
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)

    def channel_options(self, address: str) -> list[tuple[str, Any]]:
        """The options checking the runtime's certificate against ``server_name`` (``localhost`` for ``unix:``)."""
        name = self.server_name or ("localhost" if address.startswith("unix") else None)
        return [("grpc.ssl_target_name_override", name)] if name else []
