"""A test SMTP server (aiosmtpd) that stores every message it accepts in a maildir.

Run as its own process: by ``scripts/backends`` (the shared one on 127.0.0.1:2525, maildir
``$LAYOTTO_BACKENDS_DIR/smtp/maildir``) or by a test for a private one::

    python smtp_server.py --port 0 --maildir DIR [--cert CERT --key KEY]

It prints ``listening on HOST:PORT`` once it accepts connections. With ``--cert``/``--key`` it
offers STARTTLS, and AUTH PLAIN/LOGIN once the session is encrypted (user ``layotto``, password
``layotto``; AUTH is optional). Each stored message gains headers saying how it came:
``X-MailFrom`` and ``X-RcptTo`` (the envelope: BCC recipients show only there), ``X-Peer``,
``X-Smtp-Tls`` (yes/no) and ``X-Smtp-Auth`` (the login, or empty). A recipient at the domain
``refused.invalid`` is refused with ``550 5.1.1``, so tests can see a refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
from email.message import Message
from typing import Any

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = b"layotto", b"layotto"
REFUSED_DOMAIN = "@refused.invalid"


class RecordingMailbox(Mailbox):
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower().endswith(REFUSED_DOMAIN):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def prepare_message(self, session: Session, envelope: Envelope) -> Message:
        message: Any = super().prepare_message(session, envelope)
        message["X-Smtp-Tls"] = "yes" if session.ssl else "no"
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else b""
        message["X-Smtp-Auth"] = login.decode() if login else ""
        return message  # type: ignore[no-any-return]


def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == USER and data.password == PASSWORD
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


async def serve(host: str, port: int, maildir: str, cert: str, key: str) -> None:
    for sub in ("tmp", "new", "cur"):  # mailbox.Maildir creates them only with the directory itself
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    handler = RecordingMailbox(maildir)
    tls = None
    if cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="layotto-test-smtp",
            tls_context=tls,
            authenticator=authenticate,
            auth_required=False,
            auth_require_tls=True,
        ),
        host,
        port,
    )
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--cert", default="")
    parser.add_argument("--key", default="")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.maildir, args.cert, args.key))


if __name__ == "__main__":
    main()
