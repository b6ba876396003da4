#!/usr/bin/env bash
# benches/faults.sh — the Redis fault matrix (issue 14): two `portcullis serve` replicas on one
# Redis store, under steady traffic and revocations, while each fault is injected. The faults
# are the ignored tests of tests/it/faults/ (one per fault, one driver); this script runs them
# one at a time and turns their `FAULT-ROW|…` lines into a Markdown table, printed and written
# to benches/results/faults-<date>.md.
#
#   benches/faults.sh                     # every fault (about 5 minutes once built)
#   benches/faults.sh sentinel            # only the faults whose test name contains "sentinel"
#
# The tests run in a debug build (`cargo test`), which is what the figures are from: the faults
# cost seconds, a debug build's overhead is in the microseconds. Every Redis is private, on free
# ports (redis-server and redis-cli are needed; the shared test servers are not touched).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

for tool in redis-server redis-cli cargo; do
  if ! command -v "$tool" >/dev/null; then
    echo "faults.sh: $tool is missing." >&2
    case $tool in
      redis-*) echo "  Debian/Ubuntu: sudo apt-get install redis-server redis-tools (Redis 7 or later)" >&2
               echo "  macOS: brew install redis" >&2 ;;
      cargo) echo "  https://rustup.rs" >&2 ;;
    esac
    exit 1
  fi
done

FILTER="faults::${1:-}"
DATE=$(date -u +%Y-%m-%d)
OUT=benches/results/faults-$DATE.md
LOG=$(mktemp /tmp/portcullis-faults.XXXXXX)
trap 'rm -f "$LOG"' EXIT

echo "faults.sh: cargo test --test it $FILTER -- --ignored --test-threads=1 --nocapture" >&2
set +e
cargo test --test it "$FILTER" -- --ignored --test-threads=1 --nocapture 2>&1 | tee "$LOG" >&2
status=${PIPESTATUS[0]}
set -e

REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
COMMIT=$(git rev-parse --short HEAD)
if ! git diff --quiet HEAD 2>/dev/null; then COMMIT="$COMMIT (with uncommitted changes)"; fi
RUSTC=$(rustc --version | cut -d' ' -f2)
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
CORES=$(nproc 2>/dev/null || echo '?')

# The rows in the issue's order of faults (the tests run in name order), then any others.
ORDER=("kill -9 master, restart" "SIGSTOP 5 s, SIGCONT" "DEBUG SLEEP 5" "CLIENT PAUSE 5000 ALL"
  "Sentinel: SENTINEL FAILOVER" "Sentinel: kill -9 master" "Cluster: kill -9 master"
  "maxmemory reached (noeviction)" "network partition")
rows() {
  local all name
  all=$(grep -ao 'FAULT-ROW|.*' "$LOG")
  for name in "${ORDER[@]}"; do grep -F "FAULT-ROW|$name|" <<<"$all" || true; done
  for name in "${ORDER[@]}"; do all=$(grep -vF "FAULT-ROW|$name|" <<<"$all" || true); done
  [ -z "$all" ] || echo "$all"
}

table() {
  echo "| fault | requests | let through (must be 0) | revoked accepted A / B (must be 0) | revoked accepted by the other replica within 100 ms | longest request | 503s | recovery after the fault cleared | fault length | revocations ok / failed attempts | longest revocation |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  # FAULT-ROW|fault|requests|let_through|rev_a|rev_b|max_ms|503s|recovery_ms|valid_refused|other|
  #   rev_ok|rev_failed|max_rev_ms|fault_ms|propagating|unpublished|resubscribed
  rows | while IFS='|' read -r _ fault requests let rev_a rev_b max_ms unavailable recovery refused other rev_ok rev_failed max_rev fault_ms propagating _; do
    note=""
    if [ "$refused" != 0 ] || [ "$other" != 0 ]; then
      note=" (valid refused $refused, other answers $other)"
    fi
    echo "| $fault$note | $requests | $let | $rev_a / $rev_b | $propagating | $max_ms ms | $unavailable | $recovery ms | $fault_ms ms | $rev_ok / $rev_failed | $max_rev ms |"
  done
}

report() {
  echo "# Redis fault matrix, $DATE"
  echo
  echo "Portcullis $COMMIT (debug build, rustc $RUSTC), Redis $REDIS_VERSION, $CORES CPUs ($CPU)."
  echo "Made by \`benches/faults.sh\` (tests/it/faults/): two \`portcullis serve\` replicas on one store,"
  echo "\`store.command_timeout = \"500ms\"\`, \`cache_ttl\`, \`max_stale\` and \`negative_cache_ttl\` at their"
  echo "defaults (30 s, 30 s, 5 s), rate limits off; about 400 requests/s over both replicas (valid"
  echo "tokens, unknown and wrong-secret tokens, a token lacking the route's scope, every revoked"
  echo "token) and a revocation every 200 ms through each replica in turn (logout with an"
  echo "application_connect key, token deletion, suspension; a failed one is retried after the"
  echo "fault). Standalone Redis: private, append-only file with \`appendfsync always\`,"
  echo "\`maxmemory-policy noeviction\`; Sentinel: one master, one replica, one sentinel"
  echo "(\`down-after-milliseconds\` 2000); Cluster: 3 masters + 3 replicas (\`cluster-node-timeout\` 2000)."
  echo
  table
  echo
  echo "Revoked accepted: a request sent after its token's revocation answered success, and answered"
  echo "2xx: on the replica that served the revocation, from that answer on; on the other one, from"
  echo "100 ms after it (the invalidation travels over Redis pub/sub; earlier ones are counted in"
  echo "their own column). Recovery: from the moment the fault cleared (server restarted, SIGCONT,"
  echo "sleep or pause over, failover done or killed master restarted, memory limit lifted, network"
  echo "healed) to the end of the last failed request or revocation sent after it."
  if [ "$status" != 0 ]; then
    echo
    echo "**The run failed** (cargo test exit $status): see the test output for the assertion."
  fi
}

if ! grep -aq 'FAULT-ROW|' "$LOG"; then
  echo "faults.sh: no FAULT-ROW lines: the tests did not run (exit $status)" >&2
  exit 1
fi
mkdir -p benches/results
report | tee "$OUT"
echo "faults.sh: written to $OUT" >&2
exit "$status"
