#!/usr/bin/env bash
# benches/directory.sh — the user directory's paging benchmark (issue 19): GET /users?limit=50
# over 100,000 users on the Redis at 127.0.0.1:6379, one request in flight through a real
# socket, p50 and p99 per query shape, and the time of the first query (which builds the
# directory index from records written without it). The measurement is the ignored test
# tests/it/directory_bench.rs; this script runs it niced (the machine may be shared) and turns
# its `DIRECTORY-BENCH|…` lines into a Markdown table, printed and written to
# benches/results/directory-<date>.md.
#
#   benches/directory.sh                          # 100,000 users
#   DIRECTORY_BENCH_USERS=10000 benches/directory.sh
#
# The test runs in a debug build (`cargo test`): the figures are indicative; a release build
# (`cargo test --release`) is faster on the Portcullis side, Redis's share is the same.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  echo "directory.sh: no Redis on 127.0.0.1:6379 (redis-server --daemonize yes --port 6379)" >&2
  exit 1
fi

DATE=$(date -u +%Y-%m-%d)
OUT=benches/results/directory-$DATE.md
LOG=$(mktemp /tmp/portcullis-directory.XXXXXX)
trap 'rm -f "$LOG"' EXIT

nice -n 10 cargo test --test it directory_bench -- --ignored --nocapture 2>&1 | tee "$LOG" >&2

{
  echo "# Directory paging, $(date -u +%Y-%m-%dT%H:%MZ) (debug build, one request in flight)"
  echo
  echo "| query | p50 | p99 |"
  echo "|---|---|---|"
  grep '^DIRECTORY-BENCH|' "$LOG" | awk -F'|' '{ printf "| %s | %s | %s |\n", $2, $3, ($4 == "" ? "" : $4) }'
} | tee "$OUT"
