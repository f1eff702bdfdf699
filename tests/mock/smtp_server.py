#!/usr/bin/python3
"""A mock SMTP relay for the SMTP driver's tests.

Run with /usr/bin/python3: Debian's python3-aiosmtpd is only importable there.

Listens on 127.0.0.1, port chosen by the kernel (written to --port-file once
the server answers). Offers STARTTLS and requires it before MAIL (unless
--no-starttls, which offers no TLS at all so a client can be shown to refuse
sending in clear). With --user/--password it offers AUTH (only after
STARTTLS) and requires it. Every accepted message is stored raw as
MAILDIR/NNNN.eml, with the envelope (MAIL FROM, RCPT TO) in MAILDIR/NNNN.env.

Behaviour by the recipient's local part:
  tempfail@...  451 4.7.1 rate limited   (a throttling relay)
  reject@...    550 5.1.1 no such user
  stall@...     250, but the reply to the message body comes only after 30 s
                (a client timing out there cannot know whether it was delivered)
  anything else 250

Stops after --max-seconds and on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import threading

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:
    sys.stderr.write("smtp_server.py: aiosmtpd is missing: apt-get install python3-aiosmtpd\n")
    sys.exit(3)


class Handler:
    def __init__(self, maildir):
        self.maildir = maildir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "tempfail":
            return "451 4.7.1 rate limited"
        if local == "reject":
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@", 1)[0].lower() == "stall" for r in envelope.rcpt_tos):
            await asyncio.sleep(30)
        with self.lock:
            self.count += 1
            base = os.path.join(self.maildir, "%04d" % self.count)
        content = envelope.original_content or b""
        # Written under a temporary name and renamed, so a reader never sees half a message.
        for suffix, data in ((".env", json.dumps({"mail_from": envelope.mail_from,
                                                   "rcpt_tos": envelope.rcpt_tos,
                                                   "tls": session.ssl is not None,
                                                   "authenticated": bool(session.authenticated)}).encode()),
                             (".eml", content)):
            with open(base + suffix + ".tmp", "wb") as f:
                f.write(data)
            os.rename(base + suffix + ".tmp", base + suffix)
        return "250 2.0.0 OK queued as MOCK%04d" % self.count


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.login == self.user \
                and auth_data.password == self.password:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class EphemeralPortController(Controller):
    """Controller that binds port 0 and learns the real port before its self-test."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--max-seconds", type=float, default=120)
    p.add_argument("--verbose", action="store_true", help="show aiosmtpd's log (session errors)")
    a = p.parse_args()
    # aiosmtpd logs every failed TLS handshake with a traceback (which the
    # tests provoke on purpose) and warns about its own deprecated
    # Session.login_data whenever AUTH runs.
    logging.basicConfig(level=logging.INFO if a.verbose else logging.CRITICAL)
    if not a.verbose:
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)

    os.makedirs(a.maildir, exist_ok=True)
    kwargs = {}
    if not a.no_starttls:
        if not (a.cert and a.key):
            p.error("--cert and --key are required unless --no-starttls")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.user is not None:
        kwargs.update(authenticator=Authenticator(a.user, a.password or ""), auth_required=True,
                      auth_require_tls=not a.no_starttls)

    controller = EphemeralPortController(Handler(a.maildir), hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % controller.port)
    os.rename(tmp, a.port_file)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait(a.max_seconds)
    controller.stop()


if __name__ == "__main__":
    main()
