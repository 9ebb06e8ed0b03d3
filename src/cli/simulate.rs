//! `resilient-http simulate`: runs a scenario on virtual time under one policy, or two side
//! by side, and says what callers and the dependency saw (see [`crate::sim`]).
//!
//! ```text
//! resilient-http simulate --scenario FILE [--config POLICY] [--compare POLICY] [--seed N] [--json] [--out FILE.html] [--svg FILE.svg]
//! ```
//!
//! | flag | |
//! |---|---|
//! | `--scenario FILE` | the scenario (TOML; see [`Scenario`]) |
//! | `--config POLICY` | the policy file (TOML; see [`ClientBuilder::config_file`](crate::ClientBuilder::config_file)); without it, the library's defaults (labelled `defaults`) |
//! | `--compare POLICY` | the same scenario, with the same seed, under this policy file too: the reports side by side |
//! | `--seed N` | the seed of every random choice, over the scenario's `seed` |
//! | `--json` | one [`Report`] per policy as one JSON line (the `--config` one first), instead of the table |
//! | `--out FILE` | writes the HTML report ([`sim::html`]): one self-contained page |
//! | `--svg FILE` | writes the summary chart ([`sim::svg`]): one SVG |
//!
//! On stdout, the table ([`sim::table`]), or the JSON lines with `--json`
//! (the schema: [`sim::report`]). The run takes virtual time: ten minutes
//! of an incident take seconds, on the calling thread.
//!
//! Exit code 0 when the simulation ran (whatever the simulated calls did), 1 when the
//! scenario or a policy file is wrong or a file cannot be written (the error on stderr,
//! naming the file, the line and the key), 2 for bad usage.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches};

use crate::sim::{self, Report, Scenario, Simulation};

/// The subcommand's name.
pub(super) const NAME: &str = "simulate";

/// The usage line, shown with bad usage and first in `--help`.
pub(super) const USAGE: &str = "resilient-http simulate --scenario FILE [--config POLICY] \
     [--compare POLICY] [--seed N] [--json] [--out FILE.html] [--svg FILE.svg]";

/// The subcommand's arguments.
pub(super) fn command() -> clap::Command {
    let value = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(value_name)
            .help(help)
            .allow_hyphen_values(true)
    };
    clap::Command::new(NAME)
        .about(
            "Runs a scenario on virtual time against a modelled dependency, with the library's \
             own rules, and prints what callers and the dependency saw.",
        )
        .override_usage(USAGE)
        .help_template("usage: {usage}\n\n{about}\n\n{all-args}{after-help}")
        .after_help(
            "Exit code: 0 the simulation ran, 1 a bad scenario or policy file (or an output \
             file not written), 2 bad usage.",
        )
        .args_override_self(true)
        .arg(value("scenario", "FILE", "scenario file (TOML)").required(true))
        .arg(value(
            "config",
            "POLICY",
            "policy file (TOML); default: the library's defaults",
        ))
        .arg(value(
            "compare",
            "POLICY",
            "a second policy file, run on the same scenario and seed, shown side by side",
        ))
        .arg(
            value(
                "seed",
                "N",
                "the seed of every random choice (default: the scenario's)",
            )
            .value_parser(seed),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .help("one JSON report per line (the --config one first) instead of the table")
                .action(ArgAction::SetTrue),
        )
        .arg(value(
            "out",
            "FILE.html",
            "write the HTML report (charts, policies side by side)",
        ))
        .arg(value("svg", "FILE.svg", "write the summary chart as SVG"))
}

fn seed(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| "--seed needs a whole number from 0 to 18446744073709551615".to_owned())
}

/// What the command line asks for.
#[derive(Debug, Default)]
pub(super) struct Args {
    scenario: String,
    config: Option<String>,
    compare: Option<String>,
    seed: Option<u64>,
    json: bool,
    out: Option<String>,
    svg: Option<String>,
}

impl Args {
    /// The arguments clap matched with [`command`]'s parsers.
    pub(super) fn from_matches(m: &ArgMatches) -> Result<Self, String> {
        let text = |name: &str| m.get_one::<String>(name).cloned();
        Ok(Args {
            scenario: text("scenario").ok_or("missing --scenario")?,
            config: text("config"),
            compare: text("compare"),
            seed: m.get_one::<u64>("seed").copied(),
            json: m.get_flag("json"),
            out: text("out"),
            svg: text("svg"),
        })
    }
}

/// Runs the simulation(s), then writes what they saw.
pub(super) fn run(args: Args) -> ExitCode {
    let reports = match simulate(&args) {
        Ok(reports) => reports,
        Err(message) => {
            super::complain(NAME, message);
            return ExitCode::FAILURE;
        }
    };
    let code = write(
        &args,
        &reports,
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// The reports: the scenario under `--config`, then under `--compare`. The scenario's and
/// the policies' errors name their file, line and key.
fn simulate(args: &Args) -> Result<Vec<Report>, crate::Error> {
    let mut scenario = Scenario::from_file(&args.scenario)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let baseline = match &args.config {
        Some(path) => Simulation::new(scenario.clone()).config_file(path),
        None => Simulation::new(scenario.clone()),
    };
    let mut reports = vec![baseline.run()?];
    if let Some(path) = &args.compare {
        reports.push(Simulation::new(scenario).config_file(path).run()?);
    }
    Ok(reports)
}

/// Writes the table or the JSON lines to `stdout`, the files asked for (saying where on
/// `stderr`); the exit code: 0, or 1 when something could not be written.
fn write(args: &Args, reports: &[Report], stdout: &mut impl Write, stderr: &mut impl Write) -> u8 {
    let printed = if args.json {
        reports
            .iter()
            .try_for_each(|report| writeln!(stdout, "{}", report.to_json()))
    } else {
        write!(stdout, "{}", sim::table(reports))
    };
    let mut code = 0;
    match printed {
        // A reader that stopped early (`| head`) has what it wanted; the files are still
        // written.
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            let _ = writeln!(stderr, "{NAME}: cannot write the output: {e}");
            code = 1;
        }
    }
    let files = [
        (
            args.out.as_deref(),
            "HTML report",
            sim::html as fn(&[Report]) -> String,
        ),
        (args.svg.as_deref(), "summary chart", sim::svg),
    ];
    for (path, what, render) in files {
        let Some(path) = path else { continue };
        match std::fs::write(Path::new(path), render(reports)) {
            Ok(()) => {
                let _ = writeln!(stderr, "{NAME}: wrote the {what} to {path}");
            }
            Err(e) => {
                let _ = writeln!(stderr, "{NAME}: cannot write the {what} to {path}: {e}");
                code = 1;
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::{Args, write};
    use crate::sim::report::samples::report;

    fn written(args: &Args) -> (u8, String, String) {
        let reports = [report("outage", "defaults"), report("outage", "no-budget")];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = write(args, &reports, &mut out, &mut err);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap_or_default();
        (code, text(out), text(err))
    }

    #[test]
    fn json_is_one_line_per_policy_the_baseline_first() {
        let (code, out, err) = written(&Args {
            json: true,
            ..Args::default()
        });
        assert_eq!((code, err.as_str()), (0, ""));
        let lines: Vec<serde_json::Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert_eq!(lines[0]["policy"], "defaults");
        assert_eq!(lines[1]["policy"], "no-budget");
        assert!(!out.contains("phase "), "no table with --json: {out}");
    }

    #[test]
    fn table_on_stdout_and_the_files_where_asked() -> Result<(), std::io::Error> {
        let dir = std::env::temp_dir().join(format!("simulate-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (html, svg) = (dir.join("r.html"), dir.join("r.svg"));
        let (code, out, err) = written(&Args {
            out: Some(html.display().to_string()),
            svg: Some(svg.display().to_string()),
            ..Args::default()
        });
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("scenario outage:"), "{out}");
        assert!(err.contains(&format!("wrote the HTML report to {}", html.display())));
        assert!(std::fs::read_to_string(&html)?.starts_with("<!DOCTYPE html>"));
        assert!(std::fs::read_to_string(&svg)?.starts_with("<svg"));
        // A file that cannot be written: exit 1, and why.
        let (code, _, err) = written(&Args {
            out: Some(dir.join("no-such-dir").join("r.html").display().to_string()),
            ..Args::default()
        });
        assert_eq!(code, 1);
        assert!(err.contains("cannot write the HTML report to"), "{err}");
        std::fs::remove_dir_all(&dir)
    }
}
