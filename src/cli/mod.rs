//! The `resilient-http` command line (feature `cli`), installed with
//! `cargo install resilient-http --features cli`.
//!
//! ```text
//! resilient-http probe [--config FILE] [--cacert FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] [--concurrency N] [--criticality LEVEL] URL
//! resilient-http simulate --scenario FILE [--config POLICY] [--compare POLICY] [--seed N] [--json] [--out FILE.html] [--svg FILE.svg]
//! ```
//!
//! [`probe`] tries a policy against a real endpoint, like curl, and prints one JSON line per
//! request ([`probe::Line`]): what every attempt did, and why the call stopped. The `probe`
//! example of the repository runs the same code.
//!
//! [`simulate`] tries a policy against a modelled incident before it happens: the library's
//! own rules on virtual time against a dependency described in a scenario file, one policy
//! or two side by side, as a table, JSON lines, an HTML report and an SVG chart (see
//! [`crate::sim`]).
//!
//! Bad usage is told on stderr with exit code 2, and no message repeats a header value, a
//! URL or what follows an `=`: any of them may hold a secret. Tracing goes to stderr and
//! honours `RUST_LOG`.

use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

pub mod probe;
pub mod simulate;

/// Runs the command line with `args`, the program's name first (as [`std::env::args_os`]
/// gives them), and says how it went: what the binary's `main` returns.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     resilient_http::cli::run(std::env::args_os())
/// }
/// ```
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match utf8(args) {
        Ok(args) => args,
        Err(message) => return usage_failed(args_command(&[]), &message),
    };
    let matches = match command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(err) => return clap_failed(args_command(&args), &err),
    };
    // Only a command that runs traces: `--help` and bad usage print nothing else.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(io::stderr)
        .try_init();
    match matches.subcommand() {
        Some((probe::NAME, matches)) => match probe::Args::from_matches(matches) {
            Ok(args) => probe::run(args),
            Err(message) => usage_failed(Some(probe::NAME), &message),
        },
        Some((simulate::NAME, matches)) => match simulate::Args::from_matches(matches) {
            Ok(args) => simulate::run(args),
            Err(message) => usage_failed(Some(simulate::NAME), &message),
        },
        _ => usage_failed(None, "missing command: expected probe or simulate"),
    }
}

/// The whole command line: one subcommand per tool, each in a module of its own.
fn command() -> clap::Command {
    clap::Command::new("resilient-http")
        .about(
            "Outbound HTTP that survives the real world: try a policy from the command line, \
             against a real endpoint or a simulated incident.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .disable_help_subcommand(true)
        .subcommand(probe::command())
        .subcommand(simulate::command())
}

/// The subcommand `args` name, if they name one.
fn args_command(args: &[String]) -> Option<&'static str> {
    match args.get(1).map(String::as_str) {
        Some(probe::NAME) => Some(probe::NAME),
        Some(simulate::NAME) => Some(simulate::NAME),
        _ => None,
    }
}

/// Every argument as UTF-8, or which one is not: the argument itself is not repeated, as it
/// may be a secret.
fn utf8(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, String> {
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            arg.into_string()
                .map_err(|_| format!("argument {i} is not valid UTF-8"))
        })
        .collect()
}

/// clap's answer, when it is not a match: help on stdout (exit 0), or bad usage.
fn clap_failed(command: Option<&'static str>, err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(io::stdout(), "{}", err.render());
            ExitCode::SUCCESS
        }
        _ => usage_failed(command, &usage_error(command, err)),
    }
}

/// Says what is wrong with the command line, from clap's error without the values it
/// quotes: only the option's name, and the message of our own parsers (which repeat no
/// secret).
fn usage_error(command: Option<&'static str>, err: &clap::Error) -> String {
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.as_str(),
        Some(ContextValue::Strings(args)) => args.first().map_or("", String::as_str),
        _ => "",
    };
    // The name alone: what follows a space (`<N>`) or an `=` may be a value.
    let name = arg.split([' ', '=']).next().unwrap_or_default();
    match err.kind() {
        ErrorKind::ValueValidation => match std::error::Error::source(err) {
            Some(why) => why.to_string(),
            None => format!("invalid value for {name}"),
        },
        ErrorKind::InvalidValue | ErrorKind::NoEquals => format!("{name} needs a value"),
        ErrorKind::UnknownArgument if name.starts_with('-') => format!("unknown option {name}"),
        ErrorKind::UnknownArgument if command == Some(simulate::NAME) => {
            "unexpected argument: every input is given by an option".to_owned()
        }
        ErrorKind::UnknownArgument => "unexpected argument: one URL only".to_owned(),
        ErrorKind::MissingRequiredArgument => {
            format!("missing {}", name.trim_matches(['<', '>']))
        }
        ErrorKind::InvalidSubcommand | ErrorKind::MissingSubcommand => {
            "missing or unknown command: expected probe or simulate".to_owned()
        }
        kind => kind.as_str().unwrap_or("bad usage").to_owned(),
    }
}

/// Bad usage: the message and the usage of `command` (or of the whole line) on stderr, exit 2.
fn usage_failed(command: Option<&'static str>, message: &str) -> ExitCode {
    let usage = match command {
        Some(simulate::NAME) => simulate::USAGE,
        _ => probe::USAGE,
    };
    match command {
        Some(name) => complain(name, format_args!("{message}\nusage: {usage}")),
        None => complain(
            "resilient-http",
            format_args!(
                "{message}\nusage: resilient-http probe|simulate ... (see resilient-http --help)"
            ),
        ),
    }
    ExitCode::from(2)
}

/// `eprintln!` panics when stderr is gone; the exit code still tells.
fn complain(who: &str, message: impl Display) {
    let _ = writeln!(io::stderr(), "{who}: {message}");
}
