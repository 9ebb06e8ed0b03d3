//! `probe`: try a policy against a real endpoint, like curl, one JSON line per request.
//!
//! ```text
//! cargo run --example probe --features cli -- [--config FILE] [--cacert FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] [--concurrency N] URL
//! ```
//!
//! The same as `resilient-http probe` (`cargo install resilient-http --features cli`), whose
//! code it runs: flags, JSON lines and exit codes are documented in `resilient_http::cli::probe`.

use std::ffi::OsString;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| OsString::from("probe"));
    resilient_http::cli::run([program, OsString::from("probe")].into_iter().chain(args))
}
