#!/usr/bin/env bash
# Runs test binaries many times while every core is kept busy, to find tests that fail on a
# timing accident (a developer tool, not part of CI).
#
#   scripts/flaky.sh [-n COUNT] [-j LOAD] BINARY... [-- TEST-ARGS...]
#
# BINARY is a file name under tests/ without `.rs` (`breaker`, `observability`), `lib` for the
# unit tests, `all` for every one of them, or the path of a test executable already built.
# COUNT runs of each (default 40); LOAD busy processes (default: one per core); TEST-ARGS go
# to the test binary (a test name filter, `--test-threads=2`...). Each failing run's output is
# kept; the exit status is 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

count=40
load=$(nproc)
while getopts "n:j:h" opt; do
    case $opt in
        n) count=$OPTARG ;;
        j) load=$OPTARG ;;
        *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
names=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    names+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
test_args=("$@")
if [ ${#names[@]} -eq 0 ]; then
    echo "usage: $0 [-n COUNT] [-j LOAD] BINARY... [-- TEST-ARGS...]" >&2
    exit 2
fi
if [ "${names[*]}" = "all" ]; then
    names=(lib)
    for file in tests/*.rs; do
        names+=("$(basename "$file" .rs)")
    done
fi

# Build first, without load, and find each binary's path in cargo's "Executable" lines.
binaries=()
for name in "${names[@]}"; do
    if [[ $name == */* ]]; then
        binaries+=("$(basename "$name")=$name")
        continue
    fi
    case $name in
        lib) target=(--lib) ;;
        # Their required features (Cargo.toml's [[test]] entries).
        metrics) target=(--test metrics --features metrics) ;;
        probe) target=(--test probe --features cli) ;;
        reqwest_compat) target=(--test reqwest_compat --features "json query form") ;;
        compression) target=(--test compression --features "gzip deflate") ;;
        http2) target=(--test http2 --features http2) ;;
        *) target=(--test "$name") ;;
    esac
    path=$(cargo test --no-run "${target[@]}" 2>&1 | tee /dev/stderr |
        sed -n 's/^ *Executable .*(\(.*\))$/\1/p' | tail -n 1)
    if [ -z "$path" ]; then
        echo "no test binary for $name" >&2
        exit 2
    fi
    binaries+=("$name=$path")
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/flaky.XXXXXX")
busy=()
stop_load() {
    for pid in "${busy[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
}
trap stop_load EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$load"); do
    yes >/dev/null &
    busy+=($!)
done

failed=0
for entry in "${binaries[@]}"; do
    name=${entry%%=*}
    path=${entry#*=}
    failures=0
    for run in $(seq "$count"); do
        log="$logs/$name.$run.log"
        if "$path" "${test_args[@]}" >"$log" 2>&1; then
            rm -f "$log"
        else
            failures=$((failures + 1))
            echo "FAILED: $name run $run: $(grep -m1 -E '^test .* FAILED$|panicked' "$log" || true)"
        fi
    done
    echo "$name: $failures of $count runs failed"
    [ "$failures" -eq 0 ] || failed=1
done
if [ "$failed" -ne 0 ]; then
    echo "logs of the failed runs: $logs"
    exit 1
fi
rmdir "$logs" 2>/dev/null || true
