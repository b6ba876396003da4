#!/usr/bin/env python3
"""benches/revocation.py - how long a revocation takes to be seen by another replica under load
(issue 18's target: <= 50 ms at p99, two replicas under load).

Starts a private `redis-server` (or uses --redis), `portcullis echo` and two `portcullis serve`
replicas, A and B, on that Redis under a private key prefix, with `store.cache_ttl = "10m"`: a revoked key leaves B's cache only through
the invalidation A publishes, never by expiry. `store.command_timeout` is 2 s rather than the
default: on a shared VM a moment of CPU starvation can hold Redis past 500 ms, which would turn
samples into 503s instead of measuring them (such stalls still count in the latency). wrk keeps both replicas under steady load
(proxied GETs spread over --tokens API tokens, a fixed delay between a connection's requests).
Then, --samples times:

  1. make a fresh token through A, and use it on B until B has it cached (200);
  2. start --pollers connections hammering B with that token, back to back;
  3. delete the key through A (`DELETE /api/v2/users/me/keys/{id}`, the owner's token);
  4. note when A's 204 arrived, and when the first 401 from B arrived.

The sample is (B's first 401) - (A's 204): an upper bound on when B began refusing (it
includes up to one poll round trip). Negative when B refused before A's answer reached us.
Also counted: 200s from B to polls sent after A's 204 arrived (must be 0 for "visible at once").
Prints p50/p99/max and writes benches/results/revocation-<date>.md.

    benches/revocation.py [--bin target/release/portcullis] [--samples 300] [--tokens 500]
        [--connections 16] [--delay-ms 5] [--pollers 4] [--redis redis://127.0.0.1:6379/0]

Needs wrk, redis-server and Python 3.8+ (no packages). A shared Redis that other jobs use
(tests pausing it, scanning keys) shows up as 503s, which stop the run: prefer the private one.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sessions import Client, free_port, wait_port, write_config  # noqa: E402

PASSWORD = "a long bench passphrase"

LOAD_LUA = r"""
local tokens, i, pause = {}, 0, 0
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  pause = tonumber(args[2])
  i = math.random(#tokens)
end
function request()
  i = i % #tokens + 1
  return wrk.format("GET", "/load/" .. i, {["Coder-Session-Token"] = tokens[i]})
end
function delay() return pause end
"""


def replica_config(path, proxy, admin, up, redis, prefix):
    # 2 s per Redis command: on a loaded machine Redis sometimes stalls past the default 500 ms.
    write_config(path, proxy, admin, up, redis, prefix, store_extra='command_timeout = "2s"',
                 limits_extra="account_failures = 0")


async def read_response(reader):
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


class Conn:
    """One keep-alive connection sending fixed requests."""

    def __init__(self, port):
        self.port = port

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def send(self, raw):
        self.writer.write(raw)
        return await read_response(self.reader)

    def close(self):
        self.writer.close()


def request(method, path, token):
    return (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nCoder-Session-Token: {token}\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


async def sample(a_api, a_port, b_port, owner, pollers, n, rtts):
    """One revocation; returns (seconds from A's answer to B's first 401, accepted-after, 503s)."""
    st, data = a_api.call("POST", "/api/v2/users/me/keys/tokens",
                          {"token_name": f"r{n}", "lifetime": 3600 * 10**9}, token=owner)
    assert st == 201, (st, data)
    token = json.loads(data)["key"]
    key_id = token.split("-")[0]
    probe = request("GET", "/probe", token)
    conns = [await Conn(b_port).open() for _ in range(pollers)]
    for _ in range(100):
        if await conns[0].send(probe) == 200:
            break
        await asyncio.sleep(0.01)
    else:
        raise SystemExit("B never accepted a fresh token")
    answered = None        # when A's 204 arrived
    first_refusal = None   # when B's first 401 arrived
    accepted_after = 0     # 200s to polls sent after `answered`
    unavailable = 0        # 503s (the store did not answer in time): neither refused nor accepted
    stop = asyncio.Event()

    async def poll(conn):
        nonlocal first_refusal, accepted_after, unavailable
        while not stop.is_set():
            sent = time.monotonic()
            status = await conn.send(probe)
            now = time.monotonic()
            rtts.append(now - sent)
            if status == 401:
                if first_refusal is None or now < first_refusal:
                    first_refusal = now
                stop.set()
            elif status == 200:
                if answered is not None and sent > answered:
                    accepted_after += 1
            elif status == 503:
                unavailable += 1
            else:
                raise SystemExit(f"B answered {status} to a poll")

    tasks = [asyncio.create_task(poll(c)) for c in conns]
    await asyncio.sleep(random.uniform(0.002, 0.01))
    admin = await Conn(a_port).open()
    status = await admin.send(request("DELETE", f"/api/v2/users/me/keys/{key_id}", owner))
    answered = time.monotonic()
    assert status == 204, status
    try:
        await asyncio.wait_for(stop.wait(), timeout=10)
    except asyncio.TimeoutError:
        raise SystemExit("B still accepted a revoked token 10 s after A answered")
    await asyncio.gather(*tasks)
    for c in conns + [admin]:
        c.close()
    return first_refusal - answered, accepted_after, unavailable


def percentile(sorted_values, q):
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def wrk_rate(out):
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return float(m.group(1)) if m else 0.0, int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/portcullis")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--connections", type=int, default=16, help="wrk connections per replica")
    ap.add_argument("--delay-ms", type=int, default=5, help="pause between a connection's requests")
    ap.add_argument("--pollers", type=int, default=4)
    ap.add_argument("--redis", default=None, help="a Redis to use (default: a private one)")
    ap.add_argument("--out", default=None, help="result file (default benches/results/revocation-<date>.md)")
    ap.add_argument("--commit", default=None, help="what --bin was built from (default: this tree's commit)")
    args = ap.parse_args()

    run = tempfile.mkdtemp(prefix="portcullis-revocation-")
    up = free_port()
    ports = {r: (free_port(), free_port()) for r in "AB"}
    prefix = f"bench-revocation-{uuid.uuid4().hex[:8]}:"
    procs, loads = [], []
    shared = args.redis is not None
    try:
        if not shared:
            port = free_port()
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=subprocess.DEVNULL))
            wait_port(port)
            args.redis = f"redis://127.0.0.1:{port}/0"
        procs.append(subprocess.Popen([args.bin, "echo", "--listen", f"127.0.0.1:{up}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for r, (proxy, admin) in ports.items():
            config = os.path.join(run, f"{r}.toml")
            replica_config(config, proxy, admin, up, args.redis, prefix)
            procs.append(subprocess.Popen([args.bin, "serve", "--config", config],
                                          stdout=subprocess.DEVNULL,
                                          stderr=open(os.path.join(run, f"{r}.log"), "w")))
        wait_port(up)
        for proxy, _ in ports.values():
            wait_port(proxy)
        a = Client(ports["A"][0])
        st, data = a.call("POST", "/api/v2/users/first",
                          {"email": "owner@example.com", "username": "owner", "password": PASSWORD})
        assert st == 201, (st, data)
        st, data = a.call("POST", "/api/v2/users/login", {"email": "owner@example.com", "password": PASSWORD})
        assert st == 201, (st, data)
        owner = json.loads(data)["session_token"]
        users = []
        for i in range(20):
            st, data = a.call("POST", "/api/v2/users",
                              {"email": f"u{i}@example.com", "username": f"u{i}", "password": PASSWORD},
                              token=owner)
            assert st == 201, (st, data)
            users.append(json.loads(data)["id"])
        tokens_file = os.path.join(run, "tokens")
        with open(tokens_file, "w") as f:
            for i in range(args.tokens):
                st, data = a.call("POST", f"/api/v2/users/{users[i % len(users)]}/keys/tokens",
                                  {"token_name": f"t{i}", "lifetime": 24 * 3600 * 10**9}, token=owner)
                assert st == 201, (st, data)
                f.write(json.loads(data)["key"] + "\n")
        lua = os.path.join(run, "load.lua")
        with open(lua, "w") as f:
            f.write(LOAD_LUA)
        for proxy, _ in ports.values():
            loads.append(subprocess.Popen(
                ["wrk", "-t1", f"-c{args.connections}", "-d3600s", "-s", lua,
                 f"http://127.0.0.1:{proxy}", "--", tokens_file, str(args.delay_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(2)  # every load token cached on both replicas

        started = time.monotonic()
        results, rtts = [], []
        for n in range(args.samples):
            results.append(asyncio.run(
                sample(a, ports["A"][0], ports["B"][0], owner, args.pollers, n, rtts)))
        elapsed = time.monotonic() - started

        rates = []
        for w in loads:
            w.send_signal(signal.SIGINT)
            out, _ = w.communicate(timeout=30)
            rates.append(wrk_rate(out))
        loads = []
    finally:
        for w in loads:
            w.kill()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        if shared:
            subprocess.run(f"redis-cli -u '{args.redis}' --scan --pattern '{prefix}*' "
                           f"| xargs -r -n 500 redis-cli -u '{args.redis}' del >/dev/null",
                           shell=True, check=False)

    ms = sorted(r[0] * 1000 for r in results)
    accepted_after = sum(r[1] for r in results)
    unavailable = sum(r[2] for r in results)
    rtt = sorted(x * 1000 for x in rtts)
    p50, p99, worst = percentile(ms, 0.50), percentile(ms, 0.99), ms[-1]
    load = " / ".join(f"{rate:.0f} req/s ({bad} non-2xx)" for rate, bad in rates)
    lines = [
        f"samples {len(ms)} in {elapsed:.1f} s; load on A / B: {load}",
        f"B's first 401 after A's 204, ms: p50 {p50:.2f}  p99 {p99:.2f}  max {worst:.2f}  "
        f"(min {ms[0]:.2f}, mean {statistics.mean(ms):.2f})",
        f"200s from B to polls sent after A's 204: {accepted_after}",
        f"503s from B to polls (store unavailable, not counted either way): {unavailable}",
        f"a poll's round trip on B (the resolution of a sample), ms: p50 {percentile(rtt, 0.5):.2f}  "
        f"p99 {percentile(rtt, 0.99):.2f}  max {rtt[-1]:.2f}  ({len(rtt)} polls)",
    ]
    print("\n".join(lines))

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"revocation-{date}.md")
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()
    if not args.commit and subprocess.run(["git", "diff", "--quiet", "HEAD"]).returncode != 0:
        commit += " (with uncommitted changes)"
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    with open(out, "w") as f:
        f.write(f"# Revocation seen by another replica, {date}\n\n")
        f.write(f"Portcullis {commit}, `{args.bin}`; {os.cpu_count()} CPUs ({cpu}), "
                f"{platform.system()} {platform.release()}; load average before the run: "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.\n\n")
        f.write("Made by `benches/revocation.py " + " ".join(sys.argv[1:]) + "`: two replicas on one "
                + ("shared" if shared else "private") + " Redis, `cache_ttl = \"10m\"`, `command_timeout = \"2s\"`, wrk on each (`-c" f"{args.connections}`, "
                f"{args.delay_ms} ms between a connection's requests, {args.tokens} tokens), "
                f"{args.pollers} pollers on B; the key deleted through A.\n\n")
        f.write("| target | p50 | p99 | max | samples | accepted after the 204 |\n|---|---|---|---|---|---|\n")
        f.write(f"| <= 50 ms at p99 | {p50:.2f} ms | {p99:.2f} ms | {worst:.2f} ms | {len(ms)} | {accepted_after} |\n\n")
        f.write("```\n" + "\n".join(lines) + "\n```\n\nEvery sample, ms, sorted:\n\n```\n")
        f.write(" ".join(f"{x:.2f}" for x in ms) + "\n```\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
