"""Runs h2rs's five HTTP/2 downgrade smuggling checks against HOST:PORT, one by one.

h2rs 0.0.1 (pinned in requirements.txt) runs them in one go from its command line, and dies with
an unhandled ssl.SSLZeroReturnError / OSError when a server closes the connection in answer to
one of its malformed requests (a CR/LF in a header value or name, or in :path), which is what a
careful server does. This driver calls each check itself and reports one line per check:

    <check> vulnerable        h2rs's own timing heuristic fired
    <check> clean             it did not
    <check> closed            the server closed the connection on one of the check's requests, so
                              nothing of that request can have reached an upstream

Usage: python h2rs_checks.py HOST PORT TIMEOUT_SECONDS
"""

import sys

import h2rs.h2rs as h2rs

CHECKS = [
    ("H2.CL", h2rs.h2cl_detect),
    ("H2.CL-CRLF", h2rs.h2clcrlf_detect),
    ("H2.TE", h2rs.h2te_detect),
    ("H2.TE-CRLF", h2rs.h2tecrlf_detect),
    ("H2-tunnel", h2rs.h2tunnel_detect),
]


def main() -> None:
    host, port, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    h2rs.hostname, h2rs.tlsport, h2rs.timeout = host, port, timeout
    h2rs.user_agent = "h2rs"
    for name, check in CHECKS:
        try:
            verdict = "vulnerable" if check() else "clean"
        except OSError:  # ssl.SSLError and connection resets are OSErrors
            verdict = "closed"
        print(name, verdict, flush=True)


if __name__ == "__main__":
    main()
