#!/usr/bin/env bash
# Regenerates the example scenarios' reports under examples/scenarios/reports/: for each
# scenario, the HTML page comparing its two policies (NAME.html), the summary chart the guide
# shows (NAME.svg) and the two JSON reports, one line per policy (NAME.json).
#
#   scripts/simulate-examples.sh            # from the repository's root
#
# It builds the command line once (release: ten simulated minutes take seconds), then runs
# `resilient-http simulate` per scenario. The runs are deterministic for a given seed (the
# scenario's), so the files change only when the library's rules, the scenario or the policy
# do; `real_secs` in the JSON is the one value that differs between two runs.
set -euo pipefail

cd "$(dirname "$0")/.."
scenarios=examples/scenarios
policies=$scenarios/policies
out=$scenarios/reports
mkdir -p "$out"

cargo build --release --features cli --bin resilient-http
bin=target/release/resilient-http

# scenario, its baseline policy, the policy it is compared with.
pairs=(
  "outage default no-budget"
  "brownout default hedging"
  "quota-squeeze default ignore-quota"
  "retry-storm default no-budget"
  "slow-hedging default hedging"
)

for pair in "${pairs[@]}"; do
  read -r scenario baseline other <<<"$pair"
  echo "== $scenario: $baseline vs $other" >&2
  start=$(date +%s.%N)
  "$bin" simulate \
    --scenario "$scenarios/$scenario.toml" \
    --config "$policies/$baseline.toml" \
    --compare "$policies/$other.toml" \
    --out "$out/$scenario.html" \
    --svg "$out/$scenario.svg" \
    --json >"$out/$scenario.json"
  echo "   $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s real" >&2
done
