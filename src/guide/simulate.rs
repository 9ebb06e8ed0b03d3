//! Seeing a policy before the incident: `resilient-http simulate`.
//!
//! Attempts, backoff, breaker thresholds, budgets, limits and hedges are usually chosen blind,
//! and learnt during the next incident. The simulator shows beforehand what a policy does to
//! your callers and to the dependency during an outage, a brownout or a quota squeeze. It
//! builds the real [`Client`](crate::Client) from your policy file, one per replica, and
//! sends its attempts to a modelled dependency in memory instead of a socket, on tokio's
//! paused clock: the driver, every guard, the breakers, hedging and timeouts are the code
//! that runs in production, and ten minutes of an incident take seconds. The model and what
//! it leaves out are described in [`sim`](crate::sim).
//!
//! ```sh
//! cargo install resilient-http --features cli
//! resilient-http simulate --scenario FILE [--config POLICY] [--compare POLICY] [--seed N] [--json] [--out FILE.html] [--svg FILE.svg]
//! ```
//!
//! For example, from a clone of the repository:
//!
//! ```sh
//! resilient-http simulate --scenario examples/scenarios/outage.toml \
//!   --config examples/scenarios/policies/default.toml \
//!   --compare examples/scenarios/policies/no-budget.toml --out outage.html
//! ```
//!
//! - `--scenario` is the incident: who calls (an offered rate over time, or closed-loop
//!   callers; the request mix) and how the dependency behaves in phases (latency, errors,
//!   capacity, an advertised quota, recovery). Its format is described on
//!   [`sim::scenario`](crate::sim::scenario).
//! - `--config` is the policy file, as
//!   [`ClientBuilder::config_file`](crate::ClientBuilder::config_file) reads it; without it,
//!   the library's defaults (labelled `defaults`).
//! - `--compare` runs the same scenario with the same seed under a second policy, and shows
//!   the two side by side.
//! - `--seed` replaces the scenario's seed: the same scenario, policy and seed give the same
//!   report.
//! - `--json` prints one report per policy as one JSON line, instead of the table; `--out`
//!   writes the HTML report, `--svg` the summary chart.
//!
//! Exit code 0 when the simulation ran, 1 when the scenario or a policy file is wrong (the
//! message names the file, the line and the key) or a file cannot be written, 2 for bad
//! usage. From code, [`Simulation`](crate::sim::Simulation) runs the same.
//!
//! # Reading the table
//!
//! For example (`examples/scenarios/outage.toml`, as above):
//!
//! ```text
//! scenario Full outage: 600.0 s virtual, 1 replica, seed 1
//! policies: default.toml (1.8 s real), no-budget.toml (3.3 s real)
//!   policy         calls   ok %    p50    p99  p99.9  att/s  ampl  hedges/won top errors
//! --------------------------------------------------------------------------------------
//! healthy (0.0 s to 120.0 s)
//!   default       119260 100.0%     20    120    213    994 1.00x           -
//!   no-budget     119260 100.0%     20    120    213    994 1.00x           -
//! outage (120.0 s to 300.0 s)
//!   default       179940   0.0%    0.0    0.0    0.0    0.4 0.00x           - circuit_open 100%
//!   no-budget     179028   0.0%    885   1452   1603   4989 4.99x           - status 100%
//! recovery (300.0 s to 600.0 s)
//!   default       299274  94.9%     20    120    217    947 0.95x           - circuit_open 5%
//!   no-budget     300186 100.0%     21    132    958   1001 1.00x           - status <1%
//! --------------------------------------------------------------------------------------
//! total (0.0 s to 600.0 s)
//!   default       598474  67.4%     13    106    200    672 0.67x           - circuit_open 33%
//!   no-budget     598474  70.1%     31   1368   1511   2196 2.20x           - status 30%
//! breakers, default: 1 opened, open 6x (195.0 s in all), half-open 6x, from 120.1 s to 315.1 s
//! breakers, no-budget: never opened
//! ```
//!
//! A line per phase of the dependency (its name and span) and one for the whole run, each
//! followed by a row per policy (the baseline's first). `calls` ended in the span, `ok %` of
//! them succeeded; `p50`, `p99`, `p99.9` are the callers' latencies in milliseconds (the
//! whole call: retries, backoff and waits at the guards included); `att/s` is the attempts
//! per second that reached the dependency and `ampl` those attempts per call offered —
//! above 1 with retries and hedges, below it when the client's own guards kept calls away;
//! `hedges/won` the hedges sent and the calls a hedge's answer ended; `top errors` the kinds
//! of failed calls ([`ErrorKind::as_str`](crate::ErrorKind::as_str)) as shares of the calls
//! (`+N`: more kinds, in the JSON). The last lines summarise each policy's breakers.
//!
//! # Reading the charts
//!
//! The HTML report is one self-contained page (no script, nothing fetched) with the table and,
//! one row each, a chart per policy on the same axes, the phases' starts marked on every one:
//! the offered calls against the attempts at the dependency (the gap between them is the
//! amplification); the callers' success rate; their latency p50 and p99; the breakers, one
//! band per replica and endpoint (open in red, half-open in amber; counted over time when
//! more than eight opened); the guards' levels when the policy has them (retry budget left,
//! calls in the bulkhead, the adaptive limit, calls that a hold, the server's quota or the
//! rate limit kept back past their deadline) and the throttle's probability; and the hedges sent per second. The summary chart (`--svg`, as
//! below) puts the offered calls and each policy's attempts per second above, and their
//! success rates below.
//!
//! # The example scenarios
//!
//! Five scenarios ship in `examples/scenarios/`, with their policies in
//! `examples/scenarios/policies/`; their reports (HTML, SVG and JSON) are in
//! `examples/scenarios/reports/`.
//!
//! **Full outage** (`outage.toml`): 1,000 requests/s for 10 minutes; every request fails
//! with 503 for 3 of them. `default.toml` against `no-budget.toml` (the naive loop: 5
//! attempts, no retry budget, no breaker), which multiplies the load on the failing
//! dependency by five (4.99×) just when it can least take it. The defaults' breaker opens
//! within 0.1 s and turns calls away unsent, one probe at a time (0.002×); it also keeps 5 %
//! of the calls of the first 15 s of recovery away while its last open span runs out. With
//! the breaker off, the retry budget alone holds the load to 1.2× (`tests/simulate_cli.rs`).
//!
#![doc = include_str!("../../examples/scenarios/reports/outage.svg")]
//!
//! **Brownout with a slow tail** (`brownout.toml`): the p99 grows to seconds for 2 minutes,
//! with some hangs and 503s. `default.toml` against `hedging.toml`: what hedges cost the
//! dependency and win the callers.
//!
#![doc = include_str!("../../examples/scenarios/reports/brownout.svg")]
//!
//! **429 quota squeeze** (`quota-squeeze.toml`): 300 requests/s against an advertised quota
//! of 200/s, halved for a minute. `default.toml` (which follows the quota the server
//! advertises) against `ignore-quota.toml`: calls sent into a spent window come back as 429s.
//! Both then wait out the `Retry-After` holds, so an offered load above the quota piles up
//! until the deadline whichever way the quota is read: it needs a rate limit or a bulkhead to
//! shed it.
//!
#![doc = include_str!("../../examples/scenarios/reports/quota-squeeze.svg")]
//!
//! **Retry storm across 20 replicas** (`retry-storm.toml`): 2,000 requests/s together; 60% of
//! requests fail for 2 minutes, and the dependency rejects what exceeds 200 at once. Each
//! replica's budget and breakers are local: `default.toml` against `no-budget.toml` shows
//! whether the retries themselves push the dependency past its capacity. Worth seeing: with
//! 60 % of requests failing, the defaults' breakers (open at 50 % failures) turn away 99 % of
//! the calls the dependency would still have served 40 % of, while the naive loop gets 78 %
//! through at 2.9× the load.
//!
#![doc = include_str!("../../examples/scenarios/reports/retry-storm.svg")]
//!
//! **Slow dependency under hedging** (`slow-hedging.toml`): 64 closed-loop callers against a
//! long tail (p99 1.5 s, then 3 s) with some slow bodies. `default.toml` against
//! `hedging.toml`: the callers' p99 against the extra attempts.
//!
#![doc = include_str!("../../examples/scenarios/reports/slow-hedging.svg")]
//!
//! # The JSON reports
//!
//! With `--json`, each line is one [`Report`](crate::sim::Report) (the `--config` policy's
//! first): every key on every run (`null` where a value does not apply), keys whose unit is in
//! their name (`_secs`, `_ms`, `_rps`), per phase, in total, as time series, and the breakers'
//! spans. The schema, key by key, is on [`sim::report`](crate::sim::report); its version is
//! the `schema` key ([`SCHEMA`](crate::sim::report::SCHEMA)). For example, the amplification
//! during the outage under each policy:
//!
//! ```sh
//! resilient-http simulate --scenario examples/scenarios/outage.toml \
//!   --config examples/scenarios/policies/default.toml \
//!   --compare examples/scenarios/policies/no-budget.toml --json \
//!   | jq '[.policy, (.phases[] | select(.name == "outage") | .amplification)]'
//! ```
//!
//! # Regenerating the examples' reports
//!
//! ```sh
//! scripts/simulate-examples.sh
//! ```
//!
//! builds the command line once in release, then runs each example scenario under its two
//! policies and writes `NAME.html`, `NAME.svg` and `NAME.json` into
//! `examples/scenarios/reports/`. The runs are deterministic (the scenario's seed), so the
//! files change only when the library's rules, a scenario or a policy do; in the JSON,
//! `real_secs` is the one value that differs between runs.

// The page links to items of the `cli` feature: docs.rs builds every feature, and a build
// without it would only find those links broken.
#![cfg_attr(not(feature = "cli"), allow(rustdoc::broken_intra_doc_links))]
