#!/usr/bin/env bash
# Instructions per request of resilient-http and its peers, counted by callgrind: exact and
# repeatable, unlike CPU time on a shared virtual machine. Each stack runs N and 2N requests
# (after 4,000 warm-up requests, 2,000 of them 128 wide to fill the connection pool) and the
# difference divided by N is the per-request cost, start-up excluded. Every stack makes one
# GET with a 2-byte body (read) against a loopback HTTP/1.1 server in another process, 64 in
# flight, everything at defaults.
#
#   bash benches/instructions.sh [N] [STACK...]     (default N = 4000, every stack)
#
# glibc's malloc makes a run's count vary by a few hundred instructions per request (its heap
# layout differs from run to run; nothing else differs), so each count is the median of
# REPEAT runs (default 3), and "pairs" shows the spread of the single N/2N pairs. "outside
# alloc" leaves out the allocator's own functions: that count repeats within a few
# instructions from run to run, so it shows a change of 50 instructions that the whole count
# hides; read it beside the allocations per request (peers-allocs), since it does not see
# them. Only the measured calls are counted (--toggle-collect), not start-up or warm-up.
#
# The fleet's stacks run by name only: `resilient+rate` (a rate limit that never refuses) and
# `resilient+shared-rate` (the same limit shared through Redis; the script starts a
# redis-server of its own on a free port unless REDIS_URL is set, and prints the Redis round
# trips per request of the measured calls; RATE_BURST sets both stacks' burst):
#   bash benches/instructions.sh 4000 resilient+rate resilient+shared-rate
#
# So do `resilient+adaptive` (an adaptive concurrency limit that never queues) and
# `resilient+throttle` (client-side throttling that never throttles): what asking them costs.
#
# What a setting costs a call that does not use it, by name only: `resilient+hedge` (hedging
# configured, never fired: due at the attempt timeout, so no timer is set) and
# `resilient+hedge-armed` (due before it: each call arms the hedge's timer), `resilient+1rule` and `resilient+100rules` (endpoint rules the
# request does not match). And calls spread over many endpoints, round-robin: `STACK-keysN`
# (`reqwest+timeout-keys2000`, `resilient-keys10000`, …: N host names all resolved to
# 127.0.0.1, each with its own connections; past the client's bound of 1,024 endpoints every
# call comes to an endpoint it has forgotten). Their live heap and RSS: `peers-allocs N 1 STACK`.
#
# BENCH_QUOTA_FIELDS=ietf (or =x) makes every answer advertise a quota no run spends, in the
# IETF RateLimit fields (or X-RateLimit-*): what following a server's quota costs.
#
# The stacks live in benches/peers/, a Cargo project of its own (own workspace, lock file and
# target dir), so that the peers never become dependencies of the main crate. The other two
# figures of the same stacks:
#   cargo run --release --manifest-path benches/peers/Cargo.toml -- cpu [ROUNDS] [REQUESTS]
#   cargo run --release --manifest-path benches/peers/Cargo.toml --bin peers-allocs [N]
set -euo pipefail
cd "$(dirname "$0")/peers"
N="${1:-4000}"
REPEAT="${REPEAT:-3}"
shift || true
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
cargo build --release --quiet --bins
BIN=target/release/peers
if [ $# -gt 0 ]; then STACKS=(reqwest "$@"); else mapfile -t STACKS < <("$BIN" list); fi

WORK=$(mktemp -d)
REDIS=""
trap 'kill ${SERVER:-} ${REDIS:-} 2>/dev/null; rm -rf "$WORK"' EXIT
"$BIN" serve > "$WORK/url" &
SERVER=$!
if [[ " ${STACKS[*]} " == *shared* && -z "${REDIS_URL:-}" ]]; then
    command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
    PORT=$("$BIN" free-port)
    redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning > /dev/null &
    REDIS=$!
    export REDIS_URL="redis://127.0.0.1:$PORT"
fi
for _ in $(seq 50); do [ -s "$WORK/url" ] && break; sleep 0.1; done
URL=$(cat "$WORK/url")

# The allocator's own functions (glibc's malloc family and Rust's shims over it): their share
# is what varies from run to run (heap layout), so the rest is shown apart too.
ALLOCATOR='^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk|sysmalloc|tcache[a-z_]*|_int_free_[a-z_]*|__libc_(malloc|free|realloc|calloc)|__rust_(alloc|dealloc|realloc|alloc_zeroed)|__rdl_[a-z_]*)$'

count() { # stack requests -> "instructions connections-opened allocator-instructions redis-round-trips"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg" \
        --collect-atstart=no --toggle-collect='*measured_calls*' "$BIN" one "$1" "$2" "$URL" \
        > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
    allocator=$(callgrind_annotate --inclusive=no --threshold=100 "$WORK/cg" 2>/dev/null \
        | awk -v re="$ALLOCATOR" '$2 ~ /^\(/ { name = $0; sub(/^[^)]*\) +/, "", name);
            sub(/ .*/, "", name); sub(/.*:/, "", name); gsub(/,/, "", $1);
            if (name ~ re) sum += $1 } END { printf "%d", sum }')
    echo "$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/log") \
$(sed -n 's/^connections opened: \([0-9]*\)/\1/p' "$WORK/log") $allocator \
$(sed -n 's/^redis round trips: \([0-9]*\)/\1/p' "$WORK/log")"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "instructions per request (callgrind; (median of $REPEAT runs of 2N - median of $REPEAT runs of N) / N," \
    "N = $N; 64 in flight, loopback HTTP/1.1)"
printf '%-26s %13s %11s %8s %15s %9s %14s %11s\n' stack "instr/request" "vs reqwest" ratio \
    "pairs min..max" "new conns" "outside alloc" "vs reqwest"
base=""
outside_base=""
trips=()
for stack in "${STACKS[@]}"; do
    : > "$WORK/one"; : > "$WORK/two"; : > "$WORK/pairs"; : > "$WORK/out1"; : > "$WORK/out2"
    conns=0; r=""
    for _ in $(seq "$REPEAT"); do
        read -r a c1 m1 r1 <<< "$(count "$stack" "$N")"
        read -r b c2 m2 r2 <<< "$(count "$stack" $((2 * N)))"
        echo "$a" >> "$WORK/one"; echo "$b" >> "$WORK/two"
        echo $((a - m1)) >> "$WORK/out1"; echo $((b - m2)) >> "$WORK/out2"
        echo $(( (b - a) / N )) >> "$WORK/pairs"
        conns=$((conns + c1 + c2))
        if [ -n "${r1:-}" ]; then r="$r $r1/$N $r2/$((2 * N))"; fi
    done
    if [ -n "$r" ]; then trips+=("$stack:$r"); fi
    per=$(( ($(median < "$WORK/two") - $(median < "$WORK/one")) / N ))
    outside=$(( ($(median < "$WORK/out2") - $(median < "$WORK/out1")) / N ))
    if [ -z "$base" ]; then base=$per; outside_base=$outside; fi
    printf '%-26s %13d %+11d %7.3fx %15s %9d %14d %+11d\n' "$stack" "$per" $((per - base)) \
        "$(awk -v a="$per" -v b="$base" 'BEGIN { print a / b }')" \
        "$(sort -n "$WORK/pairs" | sed -n '1p;$p' | paste -sd' ' | sed 's/ /../')" "$conns" \
        "$outside" $((outside - outside_base))
done
for t in ${trips[@]+"${trips[@]}"}; do
    echo "redis round trips / measured calls, ${t%%:*}:${t#*:}" \
        "(all: $(echo "${t#*:}" | tr ' ' '\n' | awk -F/ '{ r += $1; n += $2 } END { printf "%.4f", r / n }')" \
        "per request)"
done
