#!/usr/bin/env bash
# benches/identity.sh — the identity layer's own costs, outside the shared harness:
#
#   1. latency added by a cache miss: the same authenticated request at one request in flight,
#      with the key cached (cache_ttl 60s) and with every request reloading it from Redis
#      (cache_ttl 1us), beside the same request through nginx as a plain proxy, REPS times
#      interleaved; then, from the miss run's own metrics, the Redis commands each miss sent and
#      how long the session read took (`portcullis_store_call_seconds`);
#   2. password logins per second on one core (argon2id at the default parameters, OWASP's
#      m = 19456 KiB, t = 2, p = 1), and the memory they cost.
#
# Servers are pinned to CPU 0 and wrk to CPU 1, as the shared harness does. Needs nginx, wrk,
# redis-server and curl (../shared/bench/setup.sh installs them). The run is printed and written
# to benches/results/identity-<UTC date>.md (OUT=file to choose, RECORD=0 not to), with the
# commit, the command, the machine and how loaded it was (a shared VM: read p50s, not p99s).
#
#   benches/identity.sh                  # builds the release binary
#   BENCH_BIN=target/release/portcullis DURATION=10 REPS=3 benches/identity.sh
#   BENCH_COMMIT="main b6372d8" BENCH_BIN=/tmp/portcullis-b6372d8 benches/identity.sh  # another build
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${DURATION:=10}" "${PORT_BASE:=22000}" "${REPS:=3}" "${RECORD:=1}"
cd "$ROOT"
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release
  BENCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis"
fi
COMMAND="DURATION=$DURATION REPS=$REPS BENCH_BIN=$BENCH_BIN${BENCH_COMMIT:+ BENCH_COMMIT=\"$BENCH_COMMIT\"} benches/identity.sh"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_BEFORE=$(ps -eo pcpu=,comm= --sort=-pcpu | head -4 | awk '{printf "%s%s %s%%", (NR>1?", ":""), $2, $1}')
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
api_per_minute = 0
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

metric() {  # metric TEXT NAME: the sum of every sample of NAME in a /metrics TEXT
  awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.6f", s }' <<<"$1"
}

echo "== cache-miss latency (one request in flight, ${DURATION}s each, $REPS reps interleaved)"
ROWS=()
for rep in $(seq "$REPS"); do
  read -r n50 n99 nrps < <(latency "http://127.0.0.1:$NGX/")
  ROWS+=("| $rep | nginx plain proxy | $n50 | $n99 | $nrps |")
  start_portcullis hit 60s
  TOKEN=$(session)
  read -r h50 h99 hrps < <(latency "http://127.0.0.1:$PC/app" "$TOKEN")
  ROWS+=("| $rep | Portcullis, key cached | $h50 | $h99 | $hrps |")
  stop_portcullis
  start_portcullis miss 1us
  TOKEN=$(session)
  before=$(curl -sf "http://127.0.0.1:$((PC + 1))/metrics")
  read -r m50 m99 mrps < <(latency "http://127.0.0.1:$PC/app" "$TOKEN")
  after=$(curl -sf "http://127.0.0.1:$((PC + 1))/metrics")
  stop_portcullis
  # Redis's own time per command (server side, cumulative over the reps' miss runs).
  REDIS_STATS=$(redis-cli -p "$REDIS" info commandstats | tr -d '\r' |
    awk -F'[:,=]' '/^cmdstat_(get|smembers|evalsha|eval):/ { printf "%s%s %d calls, %s us each", sep, substr($1, 9), $3, $7; sep = "; " }')
  ROWS+=("| $rep | Portcullis, key read from Redis every request | $m50 | $m99 | $mrps |")
done
# The last miss run's own account: misses, Redis commands (any kind) and session-read time.
delta() { awk -v a="$(metric "$after" "$1")" -v b="$(metric "$before" "$1")" 'BEGIN { printf "%.6f", a - b }'; }
misses=$(delta 'portcullis_key_cache_total{result="miss"}')
commands=$(delta portcullis_store_command_seconds_count)
calls=$(delta portcullis_store_call_seconds_count)
call_sum=$(delta portcullis_store_call_seconds_sum)
PER_MISS=$(awk -v m="$misses" -v c="$commands" -v n="$calls" -v s="$call_sum" 'BEGIN {
  if (m < 1 || n < 1) { print "no misses counted"; exit }
  printf "%d misses; %.2f Redis commands per miss; session read (portcullis_store_call_seconds) mean %.0f us", m, c / m, s / n * 1e6 }')
RESULT_LATENCY=$(printf '| rep | path | p50 | p99 | req/s at 1 in flight |\n|---|---|---|---|---|\n'; printf '%s\n' "${ROWS[@]}")
echo "$RESULT_LATENCY"
echo "last miss run: $PER_MISS"
echo "Redis server time per command (every miss run): $REDIS_STATS"

echo
echo "== password logins on one core (${DURATION}s, 4 in flight)"
start_portcullis login 30s
session >/dev/null
cat >"$RUN/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"email":"bench@example.com","password":"bench password 1"}'
wrk.headers["Content-Type"] = "application/json"
local shown = 0
function response(status, headers, body)  -- the first few failures, to say what they were
  if status ~= 201 and shown < 3 then shown = shown + 1; io.write("failed login: ", status, " ", body, "\n") end
end
LUA
rss_before=$(awk '/VmRSS/{print $2}' "/proc/$PC_PID/status")
out=$(taskset -c 1 wrk -t1 -c4 -d"${DURATION}s" --latency -s "$RUN/login.lua" "http://127.0.0.1:$PC/api/v2/users/login")
hwm=$(awk '/VmHWM/{print $2}' "/proc/$PC_PID/status")
rss_after=$(awk '/VmRSS/{print $2}' "/proc/$PC_PID/status")
stop_portcullis
RESULT_LOGIN=$(echo "$out" | grep -E "Requests/sec|Non-2xx| 50%| 99%|failed login" || true)
RESULT_RSS=$(printf 'RSS before %d KiB, peak %d KiB, after %d KiB' "$rss_before" "$hwm" "$rss_after")
echo "$RESULT_LOGIN"
echo "$RESULT_RSS"

[ "$RECORD" = 1 ] || exit 0
OUT=${OUT:-benches/results/identity-$(date -u +%Y-%m-%d).md}
# BENCH_COMMIT says what BENCH_BIN was built from, when that is not this tree.
COMMIT=$(git rev-parse --short HEAD)
git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (with uncommitted changes)"
COMMIT=${BENCH_COMMIT:-$COMMIT}
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
  echo "# Identity costs: cache miss and logins, $(date -u +%Y-%m-%d)"
  echo
  echo "Portcullis $COMMIT, \`$BENCH_BIN\`; $(nproc) CPUs ($CPU), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(redis-server --version | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3)."
  echo "Servers on CPU 0 (Redis too), wrk on CPU 1. Load average before the run: $LOAD_BEFORE (busiest then: $BUSY_BEFORE); after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "Command: \`$COMMAND\`"
  echo
  echo "## Cache miss (one request in flight, ${DURATION} s per row)"
  echo
  echo "$RESULT_LATENCY"
  echo
  echo "The last miss run, from its own metrics: $PER_MISS. Redis's own time per command"
  echo "(\`INFO commandstats\`, every run on this Redis): $REDIS_STATS."
  echo
  echo "## Password logins on one core (argon2id defaults, 4 in flight, ${DURATION} s)"
  echo
  echo '```'
  echo "$RESULT_LOGIN"
  echo "$RESULT_RSS"
  echo '```'
} >"$OUT"
echo "wrote $OUT"
