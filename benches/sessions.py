#!/usr/bin/env python3
"""benches/sessions.py - resident memory per cached session (issue 18's memory target).

Starts `portcullis echo` and `portcullis serve` on a private Redis key prefix with
`store.cache_ttl = "10m"`, makes USERS users and TOKENS API tokens spread over them (owner-made,
through the API), then sends one proxied request with each token, so that every token is one
cached session. Prints the server's RSS (VmRSS) idle, after the tokens were made, and after each
was used once, and the growth per cached session.

    benches/sessions.py [--bin target/release/portcullis] [--tokens 10000] [--users 100]
        [--redis redis://127.0.0.1:6379/0]

The target (issue 18): 10,000 distinct cached sessions under 24 MiB of RSS in all.
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid):
    """VmRSS, RssAnon, RssFile (KiB) and Threads of /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                out[name] = int(value.split()[0])
    return out


def rss_kib(pid):
    return status(pid)["VmRSS"]


def mappings(pid, top):
    """The `top` largest resident mappings: (KiB resident, what)."""
    rows, current = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                what = fields[5] if len(fields) > 5 else "[anon]"
                current = [0, f"{what} {fields[1]} {(hi - lo) // 1024} KiB mapped"]
                rows.append(current)
            elif fields[0] == "Rss:":
                current[0] = int(fields[1])
    return sorted(rows, reverse=True)[:top]


def show(label, pid, detail):
    if not detail:
        return
    st = status(pid)
    print(f"{label}: VmRSS {st['VmRSS']} KiB, RssAnon {st['RssAnon']} KiB, "
          f"RssFile {st['RssFile']} KiB, {st['Threads']} threads")
    for kib, what in mappings(pid, detail):
        print(f"    {kib:7d} KiB  {what}")


def write_config(path, proxy, admin, up, redis, prefix, store_extra="", limits_extra=""):
    """A `portcullis serve` config for the bench scripts: policy "authenticated", the Redis store
    under `prefix` with `cache_ttl = "10m"` (only an invalidation ends a cached key), no rate
    limits, cheap password hashes (the users are made, not measured)."""
    with open(path, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{proxy}"
admin_listen = "127.0.0.1:{admin}"
[upstream]
url = "http://127.0.0.1:{up}"
[policy]
default = "authenticated"
[store]
url = "{redis}"
key_prefix = "{prefix}"
cache_ttl = "10m"
{store_extra}
[rate_limit]
api_per_minute = 0
login_per_minute = 0
{limits_extra}
[passwords]
argon2_memory_kib = 1024
argon2_iterations = 1
""")


def wait_port(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing answered on port {port}")


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, token=None):
        headers = {}
        if body is not None:
            headers["content-type"] = "application/json"
            body = json.dumps(body)
        if token:
            headers["Coder-Session-Token"] = token
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/portcullis")
    ap.add_argument("--tokens", type=int, default=10000)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--detail", type=int, default=0, metavar="N",
                    help="also print RssAnon/RssFile and the N largest resident mappings")
    args = ap.parse_args()

    run = tempfile.mkdtemp(prefix="portcullis-sessions-")
    up, proxy, admin = free_port(), free_port(), free_port()
    prefix = f"bench-sessions-{uuid.uuid4().hex[:8]}:"
    config = os.path.join(run, "portcullis.toml")
    write_config(config, proxy, admin, up, args.redis, prefix)
    procs = []
    try:
        procs.append(subprocess.Popen([args.bin, "echo", "--listen", f"127.0.0.1:{up}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        server = subprocess.Popen([args.bin, "serve", "--config", config],
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(run, "serve.log"), "w"))
        procs.append(server)
        wait_port(up)
        wait_port(proxy)
        c = Client(proxy)
        password = "a long bench passphrase"
        st, data = c.call("POST", "/api/v2/users/first",
                          {"email": "owner@example.com", "username": "owner", "password": password})
        assert st == 201, (st, data)
        st, data = c.call("POST", "/api/v2/users/login", {"email": "owner@example.com", "password": password})
        assert st == 201, (st, data)
        owner = json.loads(data)["session_token"]
        users = []
        for i in range(args.users):
            body = {"email": f"u{i}@example.com", "username": f"u{i}", "password": password}
            st, data = c.call("POST", "/api/v2/users", body, token=owner)
            assert st == 201, (st, data)
            users.append(json.loads(data)["id"])
        # One request first, so that the owner's session and every lazy start-up allocation
        # are counted in "idle".
        c.call("GET", "/warm", token=owner)
        idle = rss_kib(server.pid)
        show("idle", server.pid, args.detail)
        tokens = []
        for i in range(args.tokens):
            user = users[i % len(users)]
            st, data = c.call("POST", f"/api/v2/users/{user}/keys/tokens",
                              {"token_name": f"t{i}", "lifetime": 24 * 3600 * 10**9}, token=owner)
            assert st == 201, (st, data)
            tokens.append(json.loads(data)["key"])
        made = rss_kib(server.pid)
        show("after making the tokens", server.pid, args.detail)
        for t in tokens:
            st, _ = c.call("GET", "/anything", token=t)
            assert st == 200, st
        used = rss_kib(server.pid)
        show("after using each once", server.pid, args.detail)
        per = (used - made) * 1024 / args.tokens
        print(f"tokens {args.tokens} over {args.users} users, Redis store, cache_ttl 10m")
        print(f"RSS idle {idle / 1024:.1f} MiB, after making the tokens {made / 1024:.1f} MiB, "
              f"after using each once {used / 1024:.1f} MiB")
        print(f"growth per cached session {per:.0f} bytes")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        subprocess.run(f"redis-cli -u '{args.redis}' --scan --pattern '{prefix}*' "
                       f"| xargs -r -n 500 redis-cli -u '{args.redis}' del >/dev/null",
                       shell=True, check=False)


if __name__ == "__main__":
    main()
