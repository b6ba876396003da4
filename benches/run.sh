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
#   MODES      which runs (default "http tls auth fwd"; auth = policy "authenticated", cache-hit path,
#              PROTOS=http; fwd = nginx auth_request -> /.portcullis/verify beside nginx auth_request
#              -> a static nginx verify location, FWD_PROTOS (default http); routes1 / routes50 =
#              authenticated proxying under 1 or 50 route rules, to compare the two; goal = issue
#              18's goal row: authenticated proxying on a cache hit, 50 route rules, identity headers
#              on, the Redis store (GOAL_REDIS, default redis://127.0.0.1:6379/0, under a key prefix
#              of its own), over HTTP/1.1, TLS h1 and TLS h2, beside nginx and HAProxy; floor =
#              hyper's floor (benches/floor: hyper's server and client with nothing between
#              them) beside nginx and HAProxy: with Portcullis's pool over HTTP/1.1, TLS h1 and
#              TLS h2, then with an upstream connection per client connection in a task of its
#              own or driven in the client connection's task, over HTTP/1.1; FLOOR_MODES narrows
#              it, e.g. "pooled:http pooled:tls")
#   BENCH_DIR  the harness (default: ../shared/bench beside the repository)
#   BENCH_BIN  a portcullis binary to measure instead of building one (default: cargo build --release)
#   FLOOR_BIN  a hyper_floor binary for MODES=floor (default: cargo build --release in
#              benches/floor, a package of its own)
#   OUT_BASE   where results go (default results/bench-<UTC time>/, one subfolder per run)
#   RECORD     1 (default): also write benches/results/<UTC date>-<short commit>.md, the run as a
#              small table to check in (benches/record.py: commit, date, this command, machine,
#              every repetition's numbers, ratios to nginx from the same repetition); 0: don't
#   PORTCULLIS_<SECTION>__<KEY>  config overrides; they reach the Portcullis under test as usual
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/benches/run.sh"
: "${PORT_BASE:=21000}"

# --- Called back by the harness as its SIDECAR_CMD: write the config, become portcullis. ---------
if [ "${1:-}" = --sidecar ]; then
  mode=$2 bin=$3
  conf="$BENCH_RUN_DIR/portcullis-$mode.toml"
  if [ "$mode" = goal-http ] || [ "$mode" = goal-tls ]; then
    # The goal row: the store, the 50 rules and the listener come from the driver (GOAL_CONF).
    sed -e "s|@UPSTREAM@|$BENCH_UPSTREAM|" -e "s|@CERT@|$BENCH_TLS_CERT|" -e "s|@KEY@|$BENCH_TLS_KEY|" \
      "$GOAL_CONF.$mode" >"$conf"
    echo "portcullis bench config ($conf):" >&2
    grep -v '^path\|^methods\|^require\|^\[\[policy' "$conf" >&2
    exec "$bin" serve --config "$conf"
  fi
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
# The exact command, for the result file: the variables that change what is measured, as given.
COMMAND=""
for v in CASES MODES DURATION REPS WARMUP PIN SERVER_CPUS LOADGEN_CPUS PORT_BASE BENCH_BIN FLOOR_BIN FLOOR_MODES \
  FWD_PROTOS FWD_CASES AUTH_CASES ROUTES_CASES PEERS WRK_THREADS WRK_CONNS H2_CONNS H2_STREAMS \
  NGINX_WORKERS UPSTREAM_BODY_BYTES TLS_KEY_TYPE $(compgen -e | grep '^PORTCULLIS_' || true); do
  [ -n "${!v+x}" ] && COMMAND+="$v=$(printf '%q' "${!v}") "
done
COMMAND+="benches/run.sh${*:+ $*}"
: "${BENCH_DIR:=$ROOT/../shared/bench}"
: "${CASES:=direct nginx-proxy haproxy portcullis}"
: "${MODES:=http tls auth fwd}"
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
if [[ " $MODES " == *" floor "* ]] && [ -z "${FLOOR_BIN:-}" ]; then
  echo "== cargo build --release (benches/floor)" >&2
  (cd "$ROOT/benches/floor" && cargo build --release --locked)
  target_dir=${CARGO_TARGET_DIR:-benches/floor/target}
  case $target_dir in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
  FLOOR_BIN="$target_dir/release/hyper_floor"
fi

# The harness names the sidecar's case "sidecar" in CASES; it is labelled SIDECAR_NAME in reports.
harness_cases=""
for c in $CASES; do
  [ "$c" = portcullis ] && c=sidecar
  harness_cases+="$c "
done

export PORT_BASE CASES="${harness_cases% }" PEERS="${PEERS:-haproxy}"
export SIDECAR_NAME=portcullis SIDECAR_AUTH=0
# The runs here use Portcullis's memory store: skip the harness's redis-benchmark unless asked for.
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

# start_portcullis OUT EXTRA_TOML [TAIL_TOML]: Portcullis with policy "authenticated" and its
# memory store, started here (pinned like the harness pins its servers) so that a user and a
# session can be created through its API first. EXTRA_TOML goes into [server], TAIL_TOML at the
# end (route rules). Sets PC_PID and PC_TOKEN; its config and log go to OUT.
start_portcullis() {
  local out=$1 extra=$2 tail=${3:-} port=$((PORT_BASE + 100)) admin=$((PORT_BASE + 101))
  mkdir -p "$out"
  local conf="$out/portcullis.toml"
  cat >"$conf" <<CONF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
$extra
[upstream]
url = "http://127.0.0.1:$((PORT_BASE + 80))"
[policy]
default = "authenticated"
[session]
cookie_secure = false
[rate_limit]
login_per_minute = 0
$tail
CONF
  local pin=()
  [ "${PIN:-1}" = 1 ] && pin=(taskset -c "${SERVER_CPUS:-0}")
  "${pin[@]}" "$BENCH_BIN" serve --config "$conf" 2>"$out/portcullis.log" &
  PC_PID=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -sf -X POST "http://127.0.0.1:$port/api/v2/users/first" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","username":"bench","password":"bench password 1"}' >/dev/null \
    || { kill "$PC_PID"; echo "benches/run.sh: could not create the bench user" >&2; exit 1; }
  PC_TOKEN=$(curl -sf -X POST "http://127.0.0.1:$port/api/v2/users/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password 1"}' | sed 's/.*"session_token":"\([^"]*\)".*/\1/')
  [ ${#PC_TOKEN} = 33 ] || { kill "$PC_PID"; echo "benches/run.sh: login failed" >&2; exit 1; }
}

stop_portcullis() {
  kill "$PC_PID"
  wait "$PC_PID" 2>/dev/null || true
}

# Authenticated proxying on a cache hit: the harness measures the running Portcullis
# (SIDECAR_PID) with a session token, beside nginx as a plain proxy and nginx auth_request.
run_auth() {
  local out="$OUT_BASE/auth"
  start_portcullis "$out" ""
  echo "== harness run 'auth': PROTOS=http, Portcullis pid $PC_PID with a session token" >&2
  SIDECAR_CMD="" SIDECAR_PID="$PC_PID" SIDECAR_TOKEN="$PC_TOKEN" SIDECAR_AUTH=1 \
    SIDECAR_URL="http://127.0.0.1:$((PORT_BASE + 100))/" SIDECAR_TLS_URL="" \
    IDENTITY_HEADER=X-Forwarded-User CASES="${AUTH_CASES:-direct nginx-proxy nginx-authreq sidecar}" \
    PROTOS=http OUT_DIR="$out" bash "$BENCH_DIR/bench.sh" || { stop_portcullis; exit 1; }
  stop_portcullis
}

# Route policy cost: authenticated proxying of GET /app/v1/items/42 under one rule
# (`/app/**` requiring user:read, the bench user is the owner) and under 50 rules, where 49
# share the first two segments and fail on the third before the same last rule decides. Each
# runs beside nginx as a plain proxy; the goal is the 50-rule ratio within 5% of the 1-rule one.
run_routes() {
  local count=$1 out="$OUT_BASE/routes$1" rules="" i
  for ((i = 1; i < count; i++)); do
    rules+=$'[[policy.route]]\npath = "/app/v1/r'"$i"$'/{id}"\nmethods = ["GET", "POST"]\nrequire = "workspace:read"\n'
  done
  rules+=$'[[policy.route]]\npath = "/app/**"\nrequire = "user:read"\n'
  start_portcullis "$out" "" "$rules"
  echo "== harness run 'routes$count': $count route rules, Portcullis pid $PC_PID" >&2
  SIDECAR_CMD="" SIDECAR_PID="$PC_PID" SIDECAR_TOKEN="$PC_TOKEN" SIDECAR_AUTH=1 \
    SIDECAR_URL="http://127.0.0.1:$((PORT_BASE + 100))/app/v1/items/42" SIDECAR_TLS_URL="" \
    IDENTITY_HEADER=X-Forwarded-User CASES="${ROUTES_CASES:-nginx-proxy sidecar}" \
    PROTOS=http OUT_DIR="$out" bash "$BENCH_DIR/bench.sh" || { stop_portcullis; exit 1; }
  stop_portcullis
}

# Forward-auth: nginx auth_request -> Portcullis /.portcullis/verify -> upstream
# (nginx-authreq-portcullis), beside nginx auth_request -> a static nginx verify location
# (nginx-authreq: a map lookup of the token and `return 200`) and nginx as a plain proxy, all
# to the same upstream, in one run. Portcullis trusts nginx (127.0.0.1) for X-Original-URI.
run_fwd() {
  local out="$OUT_BASE/fwd"
  start_portcullis "$out" 'trusted_proxies = ["127.0.0.1"]'
  echo "== harness run 'fwd': PROTOS=${FWD_PROTOS:-http}, Portcullis pid $PC_PID answering /.portcullis/verify" >&2
  SIDECAR_CMD="" SIDECAR_PID="$PC_PID" SIDECAR_TOKEN="$PC_TOKEN" SIDECAR_AUTH=1 \
    SIDECAR_URL="" SIDECAR_TLS_URL="" \
    SIDECAR_VERIFY_URL="http://127.0.0.1:$((PORT_BASE + 100))/.portcullis/verify" \
    IDENTITY_HEADER=X-Forwarded-User VERIFY_IDENTITY_HEADER=X-Forwarded-User \
    CASES="${FWD_CASES:-nginx-proxy nginx-authreq nginx-authreq-sidecar}" \
    PROTOS="${FWD_PROTOS:-http}" OUT_DIR="$out" bash "$BENCH_DIR/bench.sh" || { stop_portcullis; exit 1; }
  stop_portcullis
}

# route_rules N: N route rules for GET /app/v1/items/42: N-1 that share its first two segments
# and fail on the third, then `/app/**` requiring user:read (the bench user is an owner).
route_rules() {
  local count=$1 rules="" i
  for ((i = 1; i < count; i++)); do
    rules+=$'[[policy.route]]\npath = "/app/v1/r'"$i"$'/{id}"\nmethods = ["GET", "POST"]\nrequire = "workspace:read"\n'
  done
  rules+=$'[[policy.route]]\npath = "/app/**"\nrequire = "user:read"\n'
  printf '%s' "$rules"
}

# Issue 18's goal row: authenticated inline proxying on a cache hit (an API key of an owner,
# `Authorization: Bearer`), a route policy of 50 rules, identity headers on (`forwarded`), no
# assertion, the Redis store, over HTTP/1.1, TLS h1 and TLS h2, beside nginx and HAProxy as
# plain proxies in the same run. The user and the key are made with the CLI in Redis under a
# fresh key prefix (deleted at the end); the harness starts Portcullis itself (pinned), plain
# for `http`, then with TLS for `tls-h1 tls-h2`.
run_goal() {
  local out="$OUT_BASE/goal" redis=${GOAL_REDIS:-redis://127.0.0.1:6379/0}
  local prefix="bench-goal-$$-$RANDOM:" port=$((PORT_BASE + 100)) tls_port=$((PORT_BASE + 543))
  mkdir -p "$out"
  GOAL_CONF="$out/portcullis.toml"
  local common
  common=$(printf '[upstream]\nurl = "@UPSTREAM@"\n[store]\nurl = "%s"\nkey_prefix = "%s"\ncache_ttl = "10m"\n[identity]\nheaders = "forwarded"\n[rate_limit]\napi_per_minute = 0\n[policy]\ndefault = "authenticated"\n%s\n' \
    "$redis" "$prefix" "$(route_rules 50)")
  printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n%s' "$port" $((PORT_BASE + 101)) "$common" >"$GOAL_CONF.goal-http"
  printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n[server.tls]\ncert = "@CERT@"\nkey = "@KEY@"\n%s' \
    "$tls_port" $((PORT_BASE + 101)) "$common" >"$GOAL_CONF.goal-tls"
  sed -e "s|@UPSTREAM@|http://127.0.0.1:1|" "$GOAL_CONF.goal-http" >"$GOAL_CONF"
  echo "bench password 1" | "$BENCH_BIN" user create --config "$GOAL_CONF" --email bench@example.com \
    --username bench --role owner >/dev/null || { echo "benches/run.sh: user create failed" >&2; exit 1; }
  local token
  token=$("$BENCH_BIN" token create --config "$GOAL_CONF" --user bench --lifetime 24h) \
    || { echo "benches/run.sh: token create failed" >&2; exit 1; }
  export GOAL_CONF
  local failed=0
  echo "== harness run 'goal' (HTTP/1.1): 50 rules, Redis store under $prefix" >&2
  SIDECAR_CMD="$(printf '%q' "$SELF") --sidecar goal-http $(printf '%q' "$BENCH_BIN")" \
    SIDECAR_TOKEN="$token" SIDECAR_AUTH=1 IDENTITY_HEADER=X-Forwarded-User \
    SIDECAR_URL="http://127.0.0.1:$port/app/v1/items/42" SIDECAR_TLS_URL="" \
    CASES="${GOAL_CASES:-nginx-proxy haproxy sidecar}" PROTOS=http OUT_DIR="$out/http" \
    bash "$BENCH_DIR/bench.sh" || failed=1
  echo "== harness run 'goal' (TLS h1, TLS h2)" >&2
  SIDECAR_CMD="$(printf '%q' "$SELF") --sidecar goal-tls $(printf '%q' "$BENCH_BIN")" \
    SIDECAR_TOKEN="$token" SIDECAR_AUTH=1 IDENTITY_HEADER=X-Forwarded-User \
    SIDECAR_URL="" SIDECAR_TLS_URL="https://127.0.0.1:$tls_port/app/v1/items/42" \
    CASES="${GOAL_CASES:-nginx-proxy haproxy sidecar}" PROTOS="tls-h1 tls-h2" OUT_DIR="$out/tls" \
    bash "$BENCH_DIR/bench.sh" || failed=1
  redis-cli -u "$redis" --scan --pattern "$prefix*" | xargs -r redis-cli -u "$redis" del >/dev/null || true
  [ "$failed" = 0 ] || exit 1
  # One summary for the recorder: both runs' raw lines.
  cat "$out/http/raw.jsonl" "$out/tls/raw.jsonl" >"$out/raw.jsonl"
  cp "$out/http/meta.json" "$out/meta.json" 2>/dev/null || true
  { cat "$out/http/summary.md"; echo; cat "$out/tls/summary.md"; } >"$out/summary.md"
}

# hyper's floor (benches/floor), each mode in a harness run of its own beside nginx and HAProxy
# (the harness has one sidecar slot): `pooled` (Portcullis's pool) over HTTP/1.1, then over TLS
# h1 and h2 (the floor's listener is plain or TLS, like Portcullis's), then `spawned` and
# `in-task` over HTTP/1.1 (FLOOR_MODES narrows the list). Each run's raw results are a run of
# their own (floor-pooled-http, floor-pooled-tls, floor-spawned-http, ...) in the recorded file.
run_floor() {
  local port=$((PORT_BASE + 100)) tls_port=$((PORT_BASE + 543)) failed=0 run fmode proto
  mkdir -p "$OUT_BASE/floor"
  for run in ${FLOOR_MODES:-pooled:http pooled:tls spawned:http in-task:http}; do
    fmode=${run%%:*} proto=${run#*:}
    echo "== harness run 'floor' ($fmode, $proto): hyper's server and client, nothing between" >&2
    # Single quotes: BENCH_UPSTREAM and the certificate are the harness's, set when it starts
    # the sidecar.
    if [ "$proto" = tls ]; then
      SIDECAR_NAME="hyper-floor-$fmode" SIDECAR_AUTH=0 \
        SIDECAR_CMD="$(printf '%q' "$FLOOR_BIN") $fmode 127.0.0.1:$tls_port "'"${BENCH_UPSTREAM#http://}" "$BENCH_TLS_CERT" "$BENCH_TLS_KEY"' \
        SIDECAR_URL="" SIDECAR_TLS_URL="https://127.0.0.1:$tls_port/" \
        CASES="${FLOOR_CASES:-nginx-proxy haproxy sidecar}" PROTOS="tls-h1 tls-h2" \
        OUT_DIR="$OUT_BASE/floor-$fmode-$proto" bash "$BENCH_DIR/bench.sh" || failed=1
    else
      SIDECAR_NAME="hyper-floor-$fmode" SIDECAR_AUTH=0 \
        SIDECAR_CMD="$(printf '%q' "$FLOOR_BIN") $fmode 127.0.0.1:$port "'"${BENCH_UPSTREAM#http://}"' \
        SIDECAR_URL="http://127.0.0.1:$port/" SIDECAR_TLS_URL="" \
        CASES="${FLOOR_CASES:-nginx-proxy haproxy sidecar}" PROTOS=http \
        OUT_DIR="$OUT_BASE/floor-$fmode-$proto" bash "$BENCH_DIR/bench.sh" || failed=1
    fi
    cat "$OUT_BASE/floor-$fmode-$proto/summary.md" >>"$OUT_BASE/floor/summary.md" 2>/dev/null || true
  done
  [ "$failed" = 0 ] || exit 1
}

# paired_ratio DIR CASE REFERENCE: CASE's req/s over REFERENCE's in the same repetition and
# protocol, per repetition, from the harness's raw.jsonl.
paired_ratio() {
  python3 - "$1/raw.jsonl" "$2" "$3" <<'PY'
import json, statistics, sys
path, case, ref = sys.argv[1:]
runs = [json.loads(l) for l in open(path) if l.strip()]
rps = {(r["case"], r["proto"], r["rep"]): r["rps"] for r in runs}
for proto in sorted({p for (_, p, _) in rps}):
    ratios = [rps[(case, proto, rep)] / rps[(ref, proto, rep)]
              for (c, p, rep) in sorted(rps) if c == case and p == proto and (ref, proto, rep) in rps]
    if ratios:
        print("%s: %s / %s = %.2f median (per rep: %s)" % (proto, case, ref, statistics.median(ratios),
              ", ".join("%.2f" % r for r in ratios)))
PY
}

for mode in $MODES; do
  case $mode in
    http) run http "http" ;;
    tls) run tls "tls-h1 tls-h2" ;;
    auth) run_auth ;;
    fwd) run_fwd ;;
    routes1) run_routes 1 ;;
    routes50) run_routes 50 ;;
    goal) run_goal ;;
    floor) run_floor ;;
    *) echo "benches/run.sh: unknown mode '$mode' (http, tls, auth, fwd, routes1, routes50, goal, floor)" >&2; exit 2 ;;
  esac
done

echo
echo "Portcullis $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), results in $OUT_BASE"
for mode in $MODES; do
  echo
  echo "### $mode ($OUT_BASE/$mode/summary.md)"
  echo
  [ -f "$OUT_BASE/$mode/summary.md" ] || { echo "(no summary: smoke checks only)"; continue; }
  cat "$OUT_BASE/$mode/summary.md"
  if [ "$mode" = fwd ]; then
    echo
    echo "Forward-auth, paired per repetition (goal: at least 0.9):"
    paired_ratio "$OUT_BASE/fwd" nginx-authreq-portcullis nginx-authreq
  fi
done

# The run as a file to check in (docs/benchmarks.md lists them): never overwrites an earlier one.
if [ "${RECORD:-1}" = 1 ]; then
  result="$ROOT/benches/results/$(date -u +%Y-%m-%d)-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  n=1 file="$result.md"
  while [ -e "$file" ]; do n=$((n + 1)) file="$result-$n.md"; done
  echo
  echo "Recorded: $(python3 "$ROOT/benches/record.py" "$OUT_BASE" "$file" "$COMMAND")"
fi
