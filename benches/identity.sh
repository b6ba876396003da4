#!/usr/bin/env bash
# benches/identity.sh — the identity layer's own costs, outside the shared harness:
#
#   1. latency added by a cache miss: the same authenticated request at one request in flight,
#      with the key cached (cache_ttl 60s) and with every request reloading it from Redis
#      (cache_ttl 1ms), beside the same request through nginx as a plain proxy;
#   2. password logins per second on one core (argon2id at the configured parameters), and the
#      memory they cost.
#
# Servers are pinned to CPU 0 and wrk to CPU 1, as the shared harness does. Needs nginx, wrk,
# redis-server and curl (../shared/bench/setup.sh installs them).
#
#   benches/identity.sh                  # builds the release binary
#   BENCH_BIN=target/release/portcullis DURATION=10 benches/identity.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${DURATION:=10}" "${PORT_BASE:=22000}"
cd "$ROOT"
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release
  BENCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis"
fi
RUN=$(mktemp -d /tmp/portcullis-identity-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

UP=$((PORT_BASE + 80)) NGX=$((PORT_BASE + 81)) REDIS=$((PORT_BASE + 379)) PC=$((PORT_BASE + 100))
mkdir -p "$RUN/tmp"
cat >"$RUN/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $RUN/nginx.pid; error_log $RUN/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp; fastcgi_temp_path $RUN/tmp;
  uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
taskset -c 0 nginx -c "$RUN/nginx.conf" & PIDS+=($!)
taskset -c 0 redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no >"$RUN/redis.log" & PIDS+=($!)
sleep 0.5

start_portcullis() {  # start_portcullis NAME CACHE_TTL -> sets PC_PID
  cat >"$RUN/$1.toml" <<CONF
[server]
listen = "127.0.0.1:$PC"
admin_listen = "127.0.0.1:$((PC + 1))"
[upstream]
url = "http://127.0.0.1:$UP"
[policy]
default = "authenticated"
[store]
url = "redis://127.0.0.1:$REDIS"
key_prefix = "bench-$1:"
cache_ttl = "$2"
[session]
cookie_secure = false
[rate_limit]
login_per_minute = 0
account_failures = 0
CONF
  taskset -c 0 "$BENCH_BIN" serve --config "$RUN/$1.toml" 2>"$RUN/$1.log" & PC_PID=$!
  PIDS+=("$PC_PID")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((PC + 1))/readyz" >/dev/null && return; sleep 0.1; done
  echo "portcullis did not start (see $RUN/$1.log)" >&2; exit 1
}
stop_portcullis() { kill "$PC_PID"; wait "$PC_PID" 2>/dev/null || true; }

session() {  # creates the first user (if needed) and prints a session token
  curl -s -X POST "http://127.0.0.1:$PC/api/v2/users/first" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","username":"bench","password":"bench password 1"}' >/dev/null
  curl -sf -X POST "http://127.0.0.1:$PC/api/v2/users/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password 1"}' | sed 's/.*"session_token":"\([^"]*\)".*/\1/'
}

latency() {  # latency URL [TOKEN] -> "p50 p99" in ms at one request in flight
  local hdr=()
  [ -n "${2:-}" ] && hdr=(-H "Authorization: Bearer $2")
  taskset -c 1 wrk -t1 -c1 -d"${DURATION}s" --latency "${hdr[@]}" "$1" \
    | awk '/ 50%/{p50=$2} / 99%/{p99=$2} /Requests\/sec/{rps=$2} END{print p50, p99, rps}'
}

echo "== cache-miss latency (one request in flight, ${DURATION}s each)"
read -r n50 n99 nrps < <(latency "http://127.0.0.1:$NGX/")
start_portcullis hit 60s
TOKEN=$(session)
read -r h50 h99 hrps < <(latency "http://127.0.0.1:$PC/app" "$TOKEN")
stop_portcullis
start_portcullis miss 1us
TOKEN=$(session)
read -r m50 m99 mrps < <(latency "http://127.0.0.1:$PC/app" "$TOKEN")
stop_portcullis
printf '| path | p50 | p99 | req/s at 1 in flight |\n|---|---|---|---|\n'
printf '| nginx plain proxy | %s | %s | %s |\n' "$n50" "$n99" "$nrps"
printf '| Portcullis, key cached | %s | %s | %s |\n' "$h50" "$h99" "$hrps"
printf '| Portcullis, key read from Redis every request | %s | %s | %s |\n' "$m50" "$m99" "$mrps"

echo
echo "== password logins on one core (${DURATION}s, 4 in flight)"
start_portcullis login 30s
session >/dev/null
cat >"$RUN/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"email":"bench@example.com","password":"bench password 1"}'
wrk.headers["Content-Type"] = "application/json"
LUA
rss_before=$(awk '/VmRSS/{print $2}' "/proc/$PC_PID/status")
out=$(taskset -c 1 wrk -t1 -c4 -d"${DURATION}s" --latency -s "$RUN/login.lua" "http://127.0.0.1:$PC/api/v2/users/login")
hwm=$(awk '/VmHWM/{print $2}' "/proc/$PC_PID/status")
rss_after=$(awk '/VmRSS/{print $2}' "/proc/$PC_PID/status")
stop_portcullis
echo "$out" | grep -E "Requests/sec|Non-2xx| 50%| 99%" || true
printf 'RSS before %d KiB, peak %d KiB, after %d KiB\n' "$rss_before" "$hwm" "$rss_after"
