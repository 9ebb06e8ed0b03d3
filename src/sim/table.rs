//! The report as a table for the terminal: plain ASCII, at most 100 columns.
//!
//! A line per phase (its name and span) and one for the whole run, each followed by one
//! row per report (`--compare`: the baseline's first), so the policies compare at a glance
//! on adjacent lines. The breakers' spans follow, summarised per policy.
//!
//! ```text
//!   policy         calls   ok %    p50    p99  p99.9  att/s  ampl  hedges/won top errors
//! ```
//!
//! Latencies are the callers' (the whole call) in milliseconds; `att/s` is the attempts per
//! second that reached the dependency, `ampl` those attempts per call offered;
//! `hedges/won` the hedges sent and the calls a hedge's answer ended; `top errors` the most
//! frequent kinds of failed calls, as shares of the span's calls (`+N`: more kinds, not
//! shown). `-` where there is nothing to say (no call, no hedge). A policy file's label is
//! shown without its `.toml`.

use std::fmt::Write;

use super::report::{Report, Stats};

/// The widest a line gets.
const WIDTH: usize = 100;
/// The width of the policy's column (a longer label is cut, ending with `~`).
const POLICY: usize = 12;

pub(crate) fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "{}",
        cut(
            &format!(
                "scenario {}: {} virtual, {} replica{}, seed {}",
                first.scenario,
                secs(first.duration_secs),
                first.replicas,
                if first.replicas == 1 { "" } else { "s" },
                first.seed
            ),
            WIDTH
        )
    );
    let runs: Vec<String> = reports
        .iter()
        .map(|r| format!("{} ({} real)", r.policy, secs(r.real_secs)))
        .collect();
    let _ = writeln!(
        out,
        "{}",
        cut(&format!("policies: {}", runs.join(", ")), WIDTH)
    );
    let header = format!(
        "  {:<POLICY$} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>11} top errors",
        "policy", "calls", "ok %", "p50", "p99", "p99.9", "att/s", "ampl", "hedges/won"
    );
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.len()));
    // A line names the phase and its span, then one row per report: the same scenario, so
    // the same phases; the baseline's give the lines.
    let phases = first.phases.len();
    for i in 0..=phases {
        let stats = |r: &'_ Report| {
            if i < phases {
                r.phases.get(i).cloned()
            } else {
                Some(r.total.clone())
            }
        };
        let Some(title) = stats(first) else { continue };
        if i == phases {
            let _ = writeln!(out, "{}", "-".repeat(header.len()));
        }
        let _ = writeln!(
            out,
            "{}",
            cut(
                &format!(
                    "{} ({} to {})",
                    title.name,
                    secs(title.start_secs),
                    secs(title.end_secs)
                ),
                WIDTH
            )
        );
        for report in reports {
            if let Some(stats) = stats(report) {
                let _ = writeln!(out, "{}", row(&report.policy, &stats));
            }
        }
    }
    for report in reports {
        let _ = writeln!(out, "{}", cut(&breakers(report), WIDTH));
    }
    out
}

/// One row: `s` under `policy`.
fn row(policy: &str, s: &Stats) -> String {
    let line = format!(
        "  {:<POLICY$} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>11}",
        cut(shown(policy), POLICY),
        s.calls,
        percent(s.success_rate),
        millis(s.latency_ms.p50),
        millis(s.latency_ms.p99),
        millis(s.latency_ms.p999),
        rate(s.attempts_rps),
        s.amplification
            .map_or("-".to_owned(), |a| format!("{a:.2}x")),
        if s.hedges_sent == 0 {
            "-".to_owned()
        } else {
            format!("{}/{}", s.hedges_sent, s.hedges_won)
        },
    );
    let room = WIDTH.saturating_sub(line.chars().count() + 1);
    let errors = top_errors(s, room);
    if errors.is_empty() {
        line
    } else {
        format!("{line} {errors}")
    }
}

/// The most frequent error kinds of failed calls, as shares of the calls, as many as fit in
/// `room` columns (at least the first, cut).
fn top_errors(s: &Stats, room: usize) -> String {
    let mut kinds: Vec<(&String, u64)> = s
        .errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k, *n))
        .collect();
    // The most frequent first; the names break ties, so the text is the same on every run.
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut text = String::new();
    let mut left = kinds.len();
    for (kind, n) in kinds {
        let share = n as f64 / s.calls.max(1) as f64 * 100.0;
        let share = if share < 0.5 {
            "<1%".to_owned()
        } else {
            format!("{share:.0}%")
        };
        let item = format!("{kind} {share}");
        // Room is kept for the `+N` that says how many kinds are left out.
        let more = if left > 1 { 3 } else { 0 };
        if text.is_empty() {
            text = cut(&item, room.saturating_sub(more));
        } else if text.chars().count() + 1 + item.chars().count() + more <= room {
            text.push(' ');
            text.push_str(&item);
        } else {
            let _ = write!(text, " +{left}");
            break;
        }
        left -= 1;
    }
    text
}

/// The breakers' spans of `report` in one line.
fn breakers(report: &Report) -> String {
    let mut opened = 0;
    let mut open_spans = 0;
    let mut half_open_spans = 0;
    let mut open_secs = 0.0;
    let mut first: Option<f64> = None;
    let mut last: Option<f64> = None;
    for band in &report.breakers {
        let mut any = false;
        for span in &band.spans {
            if span.state == "open" {
                any = true;
                open_spans += 1;
                open_secs += (span.to_secs - span.from_secs).max(0.0);
                first = Some(first.map_or(span.from_secs, |f| f.min(span.from_secs)));
            } else {
                half_open_spans += 1;
            }
            last = Some(last.map_or(span.to_secs, |l| l.max(span.to_secs)));
        }
        opened += usize::from(any);
    }
    let (Some(first), Some(last)) = (first, last) else {
        return format!("breakers, {}: never opened", shown(&report.policy));
    };
    format!(
        "breakers, {}: {opened} opened, open {open_spans}x ({} in all), half-open \
         {half_open_spans}x, from {} to {}",
        shown(&report.policy),
        secs(open_secs),
        secs(first),
        secs(last),
    )
}

/// A policy's label as the table shows it: a file's name without its `.toml`, which says
/// nothing in a column 10 wide.
fn shown(policy: &str) -> &str {
    policy.strip_suffix(".toml").unwrap_or(policy)
}

/// `text`, cut to `width` characters (ending with `~` when cut).
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('~');
    cut
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// Milliseconds: a decimal below 10 ms, none above.
fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 10.0 => format!("{ms:.1}"),
        Some(ms) => format!("{ms:.0}"),
    }
}

/// A rate per second: a decimal below 100, none above.
fn rate(rps: f64) -> String {
    if rps < 100.0 {
        format!("{rps:.1}")
    } else {
        format!("{rps:.0}")
    }
}

/// Seconds, with one decimal.
fn secs(secs: f64) -> String {
    format!("{secs:.1} s")
}

#[cfg(test)]
mod tests {
    use super::super::report::samples::report;
    use super::{WIDTH, render};

    #[test]
    fn one_report_exactly() {
        let expected = "\
scenario outage: 30.0 s virtual, 1 replica, seed 7
policies: defaults (0.2 s real)
  policy         calls   ok %    p50    p99  p99.9  att/s  ampl  hedges/won top errors
--------------------------------------------------------------------------------------
healthy (0.0 s to 10.0 s)
  defaults        1000 100.0%    4.2    120    180    100 1.00x           -
outage (10.0 s to 30.0 s)
  defaults        2000  25.0%    4.2    120   2000    200 2.00x           - circuit_open 50% +1
--------------------------------------------------------------------------------------
total (0.0 s to 30.0 s)
  defaults        3000  50.0%    4.2    120   2000    167 1.67x           - circuit_open 33% +1
breakers, defaults: 1 opened, open 1x (8.0 s in all), half-open 1x, from 12.0 s to 21.0 s
";
        assert_eq!(render(&[report("outage", "defaults")]), expected);
    }

    #[test]
    fn two_reports_row_by_row_within_100_ascii_columns() {
        let mut hedging = report("outage", "hedging-with-a-long-name");
        hedging.phases[1].hedges_sent = 120;
        hedging.phases[1].hedges_won = 30;
        hedging.breakers.clear();
        let text = render(&[report("outage", "defaults.toml"), hedging]);
        let lines: Vec<&str> = text.lines().collect();
        let fits = |l: &&str| l.len() <= WIDTH && l.is_ascii();
        assert!(lines.iter().all(fits), "{text}");
        // Under each phase's line, one row per policy, the second's name cut to its column.
        let outage = (lines.iter())
            .position(|l| l.starts_with("outage (10.0 s to 30.0 s)"))
            .unwrap_or(0);
        assert!(outage > 0, "{text}");
        // A file's `.toml` is left out of the column (but not out of the header).
        assert!(
            lines[outage + 1].starts_with("  defaults        2000 "),
            "{text}"
        );
        assert!(lines[1].starts_with("policies: defaults.toml (0.2 s real), "));
        assert!(
            lines[outage + 2].starts_with("  hedging-wit~    2000 "),
            "{text}"
        );
        assert!(lines[outage + 2].contains("      120/30 "), "{text}");
        let end = "breakers, hedging-with-a-long-name: never opened\n";
        assert!(text.ends_with(end), "{text}");
    }

    #[test]
    fn a_run_without_calls_says_dashes() {
        let mut empty = report("idle", "defaults");
        for s in empty.phases.iter_mut().chain([&mut empty.total]) {
            s.calls = 0;
            s.success_rate = None;
            s.amplification = None;
            s.latency_ms.p50 = None;
            s.latency_ms.p99 = None;
            s.latency_ms.p999 = None;
            s.errors.values_mut().for_each(|n| *n = 0);
        }
        let text = render(&[empty]);
        let row = "\ntotal (0.0 s to 30.0 s)\n  defaults           0      -      -      -      -    167     -           -\n";
        assert!(text.contains(row), "{text}");
        assert_eq!(render(&[]), "");
    }
}
