"""TLS of the gRPC and HTTP listeners, with certificates reloaded when their files change.

:class:`ServerCertificates` reads the PEM files of a :class:`~layotto.server.config.TlsSettings`
and serves them two ways:

* to grpc.aio as ``grpc.dynamic_ssl_server_credentials``, whose fetcher gRPC calls before each
  TLS handshake: it answers the new files' configuration once after they changed, else None
  (keep the current one);
* to aiohttp as one ``ssl.SSLContext`` whose certificate chain is loaded again (connections
  made afterwards present the new certificate; open ones keep theirs).

:meth:`ServerCertificates.watch` compares the files' size, modification time and inode every
``reload_seconds``; a change that does not load (a key that does not match its certificate, a
file half written) is refused with one warning line, and the previous certificates keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
from dataclasses import dataclass

import grpc

from layotto.server.components.base import ConfigError
from layotto.server.config import TlsSettings

log = logging.getLogger(__name__)

#: a file's identity and version: (inode, size, modification time in ns)
Signature = tuple[int, int, int]


@dataclass(frozen=True)
class _Pem:
    cert: bytes
    key: bytes
    client_ca: bytes | None


class ServerCertificates:
    """The certificates of the runtime's listeners, reloaded when their files change.

    Raises ConfigError (naming ``tls.<file key>``) when a file cannot be read or the key does
    not match the certificate.
    """

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # the gRPC fetcher runs on gRPC's threads
        self._signatures = self._stat()
        self._pem = self._read()
        self.ssl_context = self._context()
        self.reloads = 0  # how many times changed files were loaded
        self._served_to_grpc = 0

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by the client CA."""
        return bool(self.settings.client_ca_file)

    def _files(self) -> dict[str, str]:
        files = {"tls.cert_file": self.settings.cert_file, "tls.key_file": self.settings.key_file}
        if self.settings.client_ca_file:
            files["tls.client_ca_file"] = self.settings.client_ca_file
        return files

    def _stat(self) -> tuple[Signature, ...]:
        signatures = []
        for key, path in self._files().items():
            try:
                info = os.stat(path)
            except OSError as error:
                raise ConfigError(f"{key}: cannot read {path}: {error.strerror}") from None
            signatures.append((info.st_ino, info.st_size, info.st_mtime_ns))
        return tuple(signatures)

    def _read(self) -> _Pem:
        contents = {}
        for key, path in self._files().items():
            try:
                with open(path, "rb") as file:
                    contents[key] = file.read()
            except OSError as error:
                raise ConfigError(f"{key}: cannot read {path}: {error.strerror}") from None
        return _Pem(contents["tls.cert_file"], contents["tls.key_file"], contents.get("tls.client_ca_file"))

    def _context(self) -> ssl.SSLContext:
        """A server SSLContext of the files as they are now (ConfigError when they do not load)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        self._load_into(context)
        return context

    def _load_into(self, context: ssl.SSLContext) -> None:
        settings = self.settings
        try:
            context.load_cert_chain(settings.cert_file, settings.key_file)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(
                f"tls.key_file: {settings.key_file} and {settings.cert_file} do not load: {error}"
            ) from None
        if settings.client_ca_file:
            try:
                context.load_verify_locations(cafile=settings.client_ca_file)
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"tls.client_ca_file: {settings.client_ca_file} does not load: {error}") from None
            context.verify_mode = ssl.CERT_REQUIRED

    def _grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        pem = self._pem
        return grpc.ssl_server_certificate_configuration([(pem.key, pem.cert)], root_certificates=pem.client_ca)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``add_secure_port`` that follow the files' changes."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            self._fetch_for_grpc,  # type: ignore[arg-type]  # grpc-stubs: gRPC documents None (no change)
            require_client_authentication=self.mutual,
        )

    def _fetch_for_grpc(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            if self._served_to_grpc == self.reloads:
                return None
            self._served_to_grpc = self.reloads
            return self._grpc_configuration()

    def reload_if_changed(self) -> bool:
        """Load the files again when they changed since the last load; whether they were loaded.

        A change that does not load is logged (one warning) and the current certificates stay.
        """
        try:
            signatures = self._stat()
        except ConfigError as error:
            log.warning("TLS certificates not reloaded: %s", error)
            return False
        if signatures == self._signatures:
            return False
        self._signatures = signatures
        try:
            pem = self._read()
            self._context()  # refuses a key that does not match its certificate before anything changes
            self._load_into(self.ssl_context)
        except ConfigError as error:
            log.warning("TLS certificates not reloaded, the previous ones keep serving: %s", error)
            return False
        with self._lock:
            self._pem = pem
            self.reloads += 1
        log.info("TLS certificates reloaded from %s", self.settings.cert_file)
        return True

    async def watch(self) -> None:
        """Reload the files when they change, every ``reload_seconds``, until cancelled."""
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            self.reload_if_changed()  # on the loop: the SSLContext is not changed while a handshake uses it
