#!/usr/bin/env bash
# benches/run.sh — measure Portcullis as a pass-through reverse proxy beside nginx and HAProxy,
# with the shared harness (../shared/bench, see its README). One command:
#
#   ../shared/bench/setup.sh          # once per machine: nginx, haproxy, wrk, h2load, redis (apt)
#   benches/run.sh                    # about 6-8 min with the defaults (DURATION=10 REPS=2 WARMUP=2)
#   DURATION=3 REPS=1 benches/run.sh  # smoke run
#
# Portcullis has one main listener, plain or TLS, so the harness runs twice:
#   1. PROTOS=http          against a plain config   (SIDECAR_URL=http://127.0.0.1:PORT_BASE+100/)
#   2. PROTOS="tls-h1 tls-h2" against a TLS config   (SIDECAR_TLS_URL=https://127.0.0.1:PORT_BASE+543/)
# Each config is written into the harness's run dir when the harness starts the sidecar, from the
# variables it exports (BENCH_UPSTREAM, BENCH_TLS_CERT, BENCH_TLS_KEY, BENCH_RUN_DIR).
#
# Parameters (environment; the harness's own, such as DURATION, REPS, WARMUP, PIN, PORT_BASE, pass
# through unchanged):
#   CASES      cases to run (default "direct nginx-proxy haproxy portcullis"; "portcullis" is the
#              harness's "sidecar" slot)
#   MODES      which runs (default "http tls auth"; auth = policy "authenticated", cache-hit path, PROTOS=http)
#   BENCH_DIR  the harness (default: ../shared/bench beside the repository)
#   BENCH_BIN  a portcullis binary to measure instead of building one (default: cargo build --release)
#   OUT_BASE   where results go (default results/bench-<UTC time>/, one subfolder per run)
#   PORTCULLIS_<SECTION>__<KEY>  config overrides; they reach the Portcullis under test as usual
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/benches/run.sh"
: "${PORT_BASE:=21000}"

# --- Called back by the harness as its SIDECAR_CMD: write the config, become portcullis. ---------
if [ "${1:-}" = --sidecar ]; then
  mode=$2 bin=$3
  conf="$BENCH_RUN_DIR/portcullis-$mode.toml"
  {
    echo "[server]"
    if [ "$mode" = tls ]; then
      echo "listen = \"127.0.0.1:$((PORT_BASE + 543))\""
    else
      echo "listen = \"127.0.0.1:$((PORT_BASE + 100))\""
    fi
    echo "admin_listen = \"127.0.0.1:$((PORT_BASE + 101))\""
    if [ "$mode" = tls ]; then
      echo "[server.tls]"
      echo "cert = \"$BENCH_TLS_CERT\""
      echo "key = \"$BENCH_TLS_KEY\""
    fi
    echo "[upstream]"
    echo "url = \"$BENCH_UPSTREAM\""
    echo "[policy]"
    echo "default = \"public\""
  } >"$conf"
  echo "portcullis bench config ($conf):" >&2
  cat "$conf" >&2
  exec "$bin" serve --config "$conf"
fi

# --- Driver ------------------------------------------------------------------------------------
: "${BENCH_DIR:=$ROOT/../shared/bench}"
: "${CASES:=direct nginx-proxy haproxy portcullis}"
: "${MODES:=http tls auth}"
: "${OUT_BASE:=$ROOT/results/bench-$(date -u +%Y%m%dT%H%M%SZ)}"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd) || { echo "benches/run.sh: no harness at $BENCH_DIR" >&2; exit 1; }
[ -x "$BENCH_DIR/bench.sh" ] || [ -f "$BENCH_DIR/bench.sh" ] || { echo "benches/run.sh: $BENCH_DIR/bench.sh not found" >&2; exit 1; }

cd "$ROOT"
if [ -z "${BENCH_BIN:-}" ]; then
  echo "== cargo build --release" >&2
  cargo build --release
  target_dir=${CARGO_TARGET_DIR:-target}
  case $target_dir in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
  BENCH_BIN="$target_dir/release/portcullis"
fi
[ -x "$BENCH_BIN" ] || { echo "benches/run.sh: $BENCH_BIN is not an executable" >&2; exit 1; }

# The harness names the sidecar's case "sidecar" in CASES; it is labelled SIDECAR_NAME in reports.
harness_cases=""
for c in $CASES; do
  [ "$c" = portcullis ] && c=sidecar
  harness_cases+="$c "
done

export PORT_BASE CASES="${harness_cases% }" PEERS="${PEERS:-haproxy}"
export SIDECAR_NAME=portcullis SIDECAR_AUTH=0
# Portcullis does not use Redis yet: skip the harness's redis-benchmark unless asked for.
export REDIS_BENCH="${REDIS_BENCH:-0}"

run() {  # run MODE PROTOS
  local mode=$1 protos=$2
  local out="$OUT_BASE/$mode"
  echo "== harness run '$mode': PROTOS=\"$protos\" CASES=\"$CASES\" DURATION=${DURATION:-10} REPS=${REPS:-2} WARMUP=${WARMUP:-2} -> $out" >&2
  if [ "$mode" = tls ]; then
    SIDECAR_URL="" SIDECAR_TLS_URL="https://127.0.0.1:$((PORT_BASE + 543))/" \
      SIDECAR_CMD="$(printf '%q' "$SELF") --sidecar tls $(printf '%q' "$BENCH_BIN")" \
      PROTOS="$protos" OUT_DIR="$out" bash "$BENCH_DIR/bench.sh"
  else
    SIDECAR_URL="http://127.0.0.1:$((PORT_BASE + 100))/" SIDECAR_TLS_URL="" \
      SIDECAR_CMD="$(printf '%q' "$SELF") --sidecar http $(printf '%q' "$BENCH_BIN")" \
      PROTOS="$protos" OUT_DIR="$out" bash "$BENCH_DIR/bench.sh"
  fi
}

# Authenticated proxying on a cache hit: Portcullis with policy "authenticated" and its memory
# store, started here (pinned like the harness pins its servers) so that a user and a session can
# be created through its API first; the harness then measures the running process (SIDECAR_PID)
# with that session's token, beside nginx as a plain proxy and nginx auth_request.
run_auth() {
  local out="$OUT_BASE/auth" port=$((PORT_BASE + 100)) admin=$((PORT_BASE + 101))
  mkdir -p "$out"
  local conf="$out/portcullis-auth.toml"
  cat >"$conf" <<CONF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
[upstream]
url = "http://127.0.0.1:$((PORT_BASE + 80))"
[policy]
default = "authenticated"
[session]
cookie_secure = false
[rate_limit]
login_per_minute = 0
CONF
  local pin=()
  [ "${PIN:-1}" = 1 ] && pin=(taskset -c "${SERVER_CPUS:-0}")
  "${pin[@]}" "$BENCH_BIN" serve --config "$conf" 2>"$out/portcullis.log" &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -sf -X POST "http://127.0.0.1:$port/api/v2/users/first" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","username":"bench","password":"bench password 1"}' >/dev/null \
    || { kill "$pid"; echo "benches/run.sh: could not create the bench user" >&2; exit 1; }
  local token
  token=$(curl -sf -X POST "http://127.0.0.1:$port/api/v2/users/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password 1"}' | sed 's/.*"session_token":"\([^"]*\)".*/\1/')
  [ ${#token} = 33 ] || { kill "$pid"; echo "benches/run.sh: login failed" >&2; exit 1; }
  echo "== harness run 'auth': PROTOS=http, Portcullis pid $pid with a session token" >&2
  SIDECAR_CMD="" SIDECAR_PID="$pid" SIDECAR_TOKEN="$token" SIDECAR_AUTH=1 \
    SIDECAR_URL="http://127.0.0.1:$port/" SIDECAR_TLS_URL="" \
    IDENTITY_HEADER=X-Forwarded-User CASES="${AUTH_CASES:-direct nginx-proxy nginx-authreq sidecar}" \
    PROTOS=http OUT_DIR="$out" bash "$BENCH_DIR/bench.sh" || { kill "$pid"; exit 1; }
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for mode in $MODES; do
  case $mode in
    http) run http "http" ;;
    tls) run tls "tls-h1 tls-h2" ;;
    auth) run_auth ;;
    *) echo "benches/run.sh: unknown mode '$mode' (http, tls, auth)" >&2; exit 2 ;;
  esac
done

echo
echo "Portcullis $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), results in $OUT_BASE"
for mode in $MODES; do
  echo
  echo "### $mode ($OUT_BASE/$mode/summary.md)"
  echo
  cat "$OUT_BASE/$mode/summary.md"
done
