"""A real SMTP server for Portcullis's OTP tests (tests/it/otp/), on aiosmtpd.

Listens on 127.0.0.1:PORT and writes every message it accepts as one JSON file in MAILDIR
(written to a temporary name, then renamed, so a reader never sees half a file):
{"mail_from", "rcpt_tos", "data", "tls", "login"} — "tls" tells whether the message came over
TLS, "login" the user it authenticated as (null when none). Prints "ready" on stdout once it
accepts connections, and runs until killed.

  server.py --port P --maildir DIR [--tls none|starttls|tls --cert C --key K]
            [--user U --password PW]

With --user, AUTH (PLAIN, LOGIN) is required before MAIL; with --tls starttls it is offered
only after STARTTLS. The pinned aiosmtpd is in requirements.txt beside this file; scripts/test
installs it into the git-ignored .venv-test/.
"""

import argparse
import json
import logging
import os
import ssl
import sys
import threading
import uuid
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Saver:
    def __init__(self, maildir, implicit_tls):
        self.maildir = maildir
        # aiosmtpd sets session.ssl only for STARTTLS; over SMTPS every session is TLS.
        self.implicit_tls = implicit_tls

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": self.implicit_tls or session.ssl is not None,
            "login": login,
        }
        name = uuid.uuid4().hex
        tmp = os.path.join(self.maildir, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.maildir, name + ".json"))
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "tls"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()

    # "AUTH without TLS" is what --tls none asks for; the warning would only clutter the output.
    warnings.simplefilter("ignore")
    # aiosmtpd itself sets the deprecated Session.login_data on every AUTH, and warns about it.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    kwargs = {}
    if a.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
        if a.tls == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            kwargs.update(ssl_context=context)
    if a.user:
        kwargs.update(
            authenticator=authenticator(a.user, a.password),
            auth_required=True,
            # Over SMTPS everything is TLS already; aiosmtpd only tracks STARTTLS here.
            auth_require_tls=a.tls == "starttls",
        )
    controller = Controller(Saver(a.maildir, a.tls == "tls"), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
