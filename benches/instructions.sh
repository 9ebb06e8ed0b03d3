#!/usr/bin/env bash
# Instructions per request of each stack, counted by callgrind: exact and repeatable, unlike
# CPU time on a shared virtual machine. Each stack runs twice (N and 2N requests) and the
# difference divided by N is the per-request cost, start-up excluded.
#
#   bash benches/instructions.sh [N]      (default N = 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
cargo bench --bench cpu_per_request --no-run 2>/dev/null
BIN=$(ls -t target/release/deps/cpu_per_request-* | grep -v '\.d$' | head -1)

BENCH_SERVE=1 "$BIN" > /tmp/instructions-server.url &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
for _ in $(seq 50); do [ -s /tmp/instructions-server.url ] && break; sleep 0.1; done
URL=$(cat /tmp/instructions-server.url)

count() { # stack requests
    BENCH_URL="$URL" BENCH_STACK="$1" BENCH_REQUESTS="$2" \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '%-26s %14s %12s\n' stack "instr/request" "vs reqwest"
base=""
for stack in reqwest reqwest+timeout tower-retry+timeout floor-by-hand resilient resilient-given-client resilient-timeouts-only; do
    one=$(count "$stack" "$N")
    two=$(count "$stack" $((2 * N)))
    per=$(( (two - one) / N ))
    [ -z "$base" ] && base=$per
    printf '%-26s %14d %+12d\n' "$stack" "$per" $((per - base))
done
