#!/usr/bin/env bash
# benches/profile.sh — where an authenticated proxied request spends its instructions and
# allocations: Portcullis (release build) under valgrind (callgrind or DHAT), a fixed number of
# requests with h2load, per protocol. Counts, not seconds: repeatable on a busy machine.
#
#   benches/profile.sh [callgrind|dhat|none] [http|tls-h1|tls-h2]   (defaults: callgrind http)
#
# Environment: BIN (default target/release/portcullis), N (requests, default 20000), C (client
# connections, default 4), OUT (default /tmp/portcullis-profile). The setup is issue 18's goal
# row: policy "authenticated" with 50 route rules, identity headers on, the memory store, a
# session token in `Authorization: Bearer`, GET /app/v1/items/42, an nginx upstream answering
# 128 bytes. Prints the instructions (callgrind) per request, including start-up and setup
# (measure two N and take the difference for the per-request cost; `N=0` gives the fixed part).
#
# FLOOR=pooled|spawned|in-task profiles hyper's floor instead (benches/floor, BIN default
# benches/floor/target/release/hyper_floor, http only): the same request and upstream, hyper's HTTP/1.1
# server and client with nothing between them. FLOOR=nginx profiles nginx as the plain proxy
# (one worker, no master process, the harness's nginx-proxy settings for plain HTTP).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tool=${1:-callgrind} proto=${2:-http}
FLOOR=${FLOOR:-}
if [ "$FLOOR" = nginx ]; then
  : "${BIN:=nginx}"
elif [ -n "$FLOOR" ]; then
  : "${BIN:=$ROOT/benches/floor/target/release/hyper_floor}"
fi
if [ -n "$FLOOR" ]; then
  [ "$proto" = http ] || { echo "FLOOR profiles http only" >&2; exit 2; }
fi
: "${BIN:=$ROOT/target/release/portcullis}" "${N:=20000}" "${C:=4}" "${OUT:=/tmp/portcullis-profile}"
: "${PORT:=24600}"
mkdir -p "$OUT"
up=$((PORT + 80)) main=$PORT admin=$((PORT + 1))

cleanup() { [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null; [ -n "${PC_PID:-}" ] && kill "$PC_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

body=$(head -c 127 /dev/zero | tr '\0' 'x')
cat >"$OUT/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $OUT/nginx-error.log;
pid $OUT/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $OUT; proxy_temp_path $OUT; fastcgi_temp_path $OUT; uwsgi_temp_path $OUT; scgi_temp_path $OUT;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$up; location / { return 200 "$body\n"; } }
}
CONF
nginx -c "$OUT/nginx.conf" &
NGINX_PID=$!

tls=""
scheme=http
if [ "$proto" != http ]; then
  scheme=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$OUT/key.pem" -out "$OUT/cert.pem" >/dev/null 2>&1
  tls=$(printf '[server.tls]\ncert = "%s"\nkey = "%s"\n' "$OUT/cert.pem" "$OUT/key.pem")
fi
rules=""
for ((i = 1; i < 50; i++)); do
  rules+=$'[[policy.route]]\npath = "/app/v1/r'"$i"$'/{id}"\nmethods = ["GET", "POST"]\nrequire = "workspace:read"\n'
done
rules+=$'[[policy.route]]\npath = "/app/**"\nrequire = "user:read"\n'
cat >"$OUT/portcullis.toml" <<CONF
[server]
listen = "127.0.0.1:$main"
admin_listen = "127.0.0.1:$admin"
workers = 1
$tls
[upstream]
url = "http://127.0.0.1:$up"
[store]
url = "memory://"
cache_ttl = "10m"
[session]
cookie_secure = false
[rate_limit]
api_per_minute = 0
login_per_minute = 0
[passwords]
argon2_memory_kib = 8192
argon2_iterations = 1
[policy]
default = "authenticated"
$rules
CONF

case $tool in
  callgrind) pre=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" --dump-instr=no) ;;
  dhat) pre=(valgrind --tool=dhat --dhat-out-file="$OUT/dhat.json") ;;
  none) pre=() ;;
  *) echo "tool: callgrind, dhat or none" >&2; exit 2 ;;
esac
if [ "$FLOOR" = nginx ]; then
  cat >"$OUT/nginx-proxy.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
error_log $OUT/nginx-proxy-error.log;
pid $OUT/nginx-proxy.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $OUT; proxy_temp_path $OUT; fastcgi_temp_path $OUT; uwsgi_temp_path $OUT; scgi_temp_path $OUT;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  upstream app { server 127.0.0.1:$up; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$main;
    location / {
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host;
      proxy_pass http://app;
    }
  }
}
CONF
  "${pre[@]}" "$BIN" -c "$OUT/nginx-proxy.conf" 2>"$OUT/portcullis.log" &
  PC_PID=$!
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$main/" && break; sleep 0.1; done
elif [ -n "$FLOOR" ]; then
  "${pre[@]}" "$BIN" "$FLOOR" "127.0.0.1:$main" "127.0.0.1:$up" 2>"$OUT/portcullis.log" &
  PC_PID=$!
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$main/" && break; sleep 0.1; done
else
  "${pre[@]}" "$BIN" serve --config "$OUT/portcullis.toml" 2>"$OUT/portcullis.log" &
  PC_PID=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
fi
[ -n "$FLOOR" ] || curl -skf -X POST "$scheme://127.0.0.1:$main/api/v2/users/first" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","username":"bench","password":"bench password 1"}' >/dev/null
token=bench-floor
[ -n "$FLOOR" ] || token=$(curl -skf -X POST "$scheme://127.0.0.1:$main/api/v2/users/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench password 1"}' | sed 's/.*"session_token":"\([^"]*\)".*/\1/')
url="$scheme://127.0.0.1:$main/app/v1/items/42"
[ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url")" = 200 ] || { echo "the proxied request failed" >&2; exit 1; }
if [ "$N" -gt 0 ]; then
  case $proto in
    http | tls-h1) h2load --h1 -n "$N" -c "$C" -H "Authorization: Bearer $token" "$url" >"$OUT/h2load.txt" ;;
    tls-h2) h2load -n "$N" -c "$C" -m 4 -H "Authorization: Bearer $token" "$url" >"$OUT/h2load.txt" ;;
  esac
  grep -E "^requests:|^status codes:" "$OUT/h2load.txt"
fi
kill -INT "$PC_PID"; wait "$PC_PID" 2>/dev/null || true; PC_PID=""
case $tool in
  callgrind)
    total=$(callgrind_annotate "$OUT/callgrind.out" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
    echo "instructions in all: $total (N=$N): callgrind_annotate $OUT/callgrind.out" ;;
  dhat) echo "DHAT profile: $OUT/dhat.json (open with dh_view.html)" ;;
esac
