//! `resilient-http probe`: sends a request through a resilient-http client, like curl, and
//! prints one JSON line per request.
//!
//! ```text
//! resilient-http probe [--config FILE] [--cacert FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] [--concurrency N] [--criticality LEVEL] URL
//! ```
//!
//! | flag | |
//! |---|---|
//! | `--config FILE` | the policy file (TOML; see [`ClientBuilder::config_file`](crate::ClientBuilder::config_file)) |
//! | `--cacert FILE` | PEM certificates (a private CA) trusted beside the system's roots, like curl's |
//! | `-X`, `--request METHOD` | the method (default GET, or POST with `-d`) |
//! | `-H`, `--header 'Name: value'` | a request header, repeatable |
//! | `-d`, `--data BODY` | the request body |
//! | `--repeat N` | send the request N times through the same client |
//! | `--concurrency N` | keep up to N of them in flight at once (default 1, at most 10,000); the lines then come in the order the requests end |
//!
//! Each request's body is read to the end inside each attempt: a body that stalls is a
//! timeout, not a success; one that breaks mid-stream is retried under the policy.
//!
//! On stdout, one [`Line`] per request, as one JSON object whose keys are the fields of
//! [`Line`] and [`AttemptLine`], in their order, on every line (`null` where one does not
//! apply):
//!
//! ```text
//! {"method","url","policy","outcome","status","error_kind","transient","retry_after_ms",
//!  "total_ms","body_bytes","message","give_up","sent",
//!  "server_quota_remaining","server_quota_reset_ms",
//!  "criticality","adaptive_limit","adaptive_in_flight","throttle_probability",
//!  "attempts":[{"n","status","error_kind","sent","delay_before_ms","elapsed_ms","hedge","cancelled"}]}
//! ```
//!
//! `server_quota_remaining` and `server_quota_reset_ms` say what the request's scope knows of
//! the quota its server advertises, when the request ends (see
//! [`ServerQuotaConfig`](crate::overload::ServerQuotaConfig)): `null` until an answer
//! advertised one, and with `follow = "off"`.
//!
//! `criticality` is how much the request mattered under overload (`critical`, `default` or
//! `sheddable`: `--criticality`, else its policy's `criticality`). The
//! adaptive concurrency limit and client-side throttling of the request's scope show as
//! they are when the request ends: `adaptive_limit` (the limit found so far),
//! `adaptive_in_flight` (attempts holding a place under it, the other requests' with
//! `--concurrency`), and `throttle_probability` (the probability, 0 to 1, that an attempt
//! of the request's criticality is throttled now); each `null` when the policy does not turn
//! that guard on (see
//! [`OverloadHandle`](crate::overload::OverloadHandle)). A request throttled locally fails
//! with `error_kind` `throttled`, `sent` false, and the probability in its `message`.
//!
//! Exit code 0 when every request succeeded, 1 when any failed, 2 for bad usage, a bad policy
//! file or a bad `--cacert` (a message on stderr, nothing on stdout). A reader that stops
//! early (`| head`) ends the run quietly, with the exit code of the requests made so far.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Arg, ArgAction, ArgMatches};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::retry::RetryHistory;
use crate::{Attempt, AttemptOutcome, Client, Error};

/// The subcommand's name.
pub(super) const NAME: &str = "probe";

/// The usage line, shown with bad usage and first in `--help`.
pub(super) const USAGE: &str = "resilient-http probe [--config FILE] [--cacert FILE] \
     [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] [--concurrency N] \
     [--criticality LEVEL] URL";

/// The most requests `--concurrency` keeps in flight: far above what one client needs to
/// load a server, far below running out of sockets or file descriptors.
const MAX_CONCURRENCY: usize = 10_000;

/// One request, as the probe prints it: the fields in this order are the line's keys.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Line {
    /// The request's method.
    pub method: String,
    /// The URL, redacted (see [`redact::url`](crate::redact::url)).
    pub url: String,
    /// The name of the policy that handled it (`"default"` unless an endpoint rule matched).
    pub policy: String,
    /// `"success"` or `"error"`.
    pub outcome: &'static str,
    /// The final status: the success's, or the failure's ([`Error::status`]).
    pub status: Option<u16>,
    /// The error's [kind](crate::ErrorKind::as_str); `null` on success.
    pub error_kind: Option<&'static str>,
    /// Whether the error is [transient](Error::is_transient); `null` on success.
    pub transient: Option<bool>,
    /// The error's [`retry_after`](Error::retry_after), in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// The request's time, its body read, in milliseconds.
    pub total_ms: u64,
    /// The body's length (0 on error).
    pub body_bytes: usize,
    /// The error's message, then its sources'; `null` on success.
    pub message: Option<String>,
    /// Why the call stopped ([`GiveUp::as_str`](crate::GiveUp::as_str)); `null` on success,
    /// and for an error no call ended with (the body failing after the call returned).
    pub give_up: Option<&'static str>,
    /// Whether the request may have reached the server ([`Error::sent`]; `true` on success).
    pub sent: bool,
    /// The requests the server's advertised quota leaves the request's scope, as known when
    /// the request ended
    /// ([`OverloadHandle::server_quota_remaining`](crate::overload::OverloadHandle::server_quota_remaining));
    /// `null` when unknown.
    pub server_quota_remaining: Option<u64>,
    /// The time to that quota's reset, in milliseconds
    /// ([`OverloadHandle::server_quota_reset`](crate::overload::OverloadHandle::server_quota_reset));
    /// `null` when unknown.
    pub server_quota_reset_ms: Option<u64>,
    /// How much the request mattered under overload
    /// ([`Criticality::as_str`](crate::overload::Criticality::as_str)): its policy's.
    pub criticality: &'static str,
    /// The adaptive concurrency limit of the request's scope when it ended
    /// ([`OverloadHandle::adaptive_limit`](crate::overload::OverloadHandle::adaptive_limit));
    /// `null` without one.
    pub adaptive_limit: Option<u32>,
    /// The attempts holding a place under that limit when it ended
    /// ([`OverloadHandle::adaptive_in_flight`](crate::overload::OverloadHandle::adaptive_in_flight));
    /// `null` without one.
    pub adaptive_in_flight: Option<u32>,
    /// The probability (0 to 1) that client-side throttling turns an attempt of the
    /// request's criticality away, when it ended
    /// ([`OverloadHandle::throttle_probability`](crate::overload::OverloadHandle::throttle_probability));
    /// `null` without throttling.
    pub throttle_probability: Option<f64>,
    /// Every attempt, first to last.
    pub attempts: Vec<AttemptLine>,
}

/// One attempt of a [`Line`]; the fields in this order are its keys.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct AttemptLine {
    /// The attempt's number, 1 for the first.
    pub n: u32,
    /// The status it came back with, if any.
    pub status: Option<u16>,
    /// What went wrong ([`ErrorKind::as_str`](crate::ErrorKind::as_str)), if anything did.
    pub error_kind: Option<&'static str>,
    /// Whether the request may have reached the server ([`Attempt::sent`]).
    pub sent: bool,
    /// The pause before it (the backoff, or a `Retry-After`), in milliseconds.
    pub delay_before_ms: u64,
    /// How long it took, in milliseconds: from when the attempt began, so a wait for the
    /// client's own guards (a rate limit's slot, a bulkhead's place) counts, as the server's
    /// time does.
    pub elapsed_ms: u64,
    /// Whether it was a [hedge](crate::hedge): sent while another was in flight.
    pub hedge: bool,
    /// Whether another attempt answered first and this one was dropped (its `status` and
    /// `error_kind` are then `null`).
    pub cancelled: bool,
}

impl AttemptLine {
    fn of(a: &Attempt) -> Self {
        let (status, error_kind) = match a.outcome {
            AttemptOutcome::Status(s) => (Some(s.as_u16()), None),
            AttemptOutcome::Error(k) => (None, Some(k.as_str())),
            AttemptOutcome::Body { status, kind } => (Some(status.as_u16()), Some(kind.as_str())),
            _ => (None, None),
        };
        AttemptLine {
            n: a.number,
            status,
            error_kind,
            sent: a.sent(),
            delay_before_ms: millis(a.delay_before),
            elapsed_ms: millis(a.duration),
            hedge: a.hedge,
            cancelled: a.outcome == AttemptOutcome::Cancelled,
        }
    }
}

/// The subcommand's arguments.
pub(super) fn command() -> clap::Command {
    // A value may begin with a `-` (a body, a header, a count to refuse with our message).
    let value = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name)
            .value_name(value_name)
            .help(help)
            .allow_hyphen_values(true)
    };
    clap::Command::new(NAME)
        .about("Sends the request through a resilient-http client and prints one JSON line per request.")
        .override_usage(USAGE)
        .help_template("usage: {usage}\n\n{about}\n\n{all-args}{after-help}")
        .after_help(
            "Exit code: 0 every request succeeded, 1 one failed, 2 bad usage, policy file or CA file.",
        )
        // As curl: the last of an option given twice wins.
        .args_override_self(true)
        .arg(value("config", "FILE", "policy file (TOML)").long("config"))
        .arg(
            value("cacert", "FILE", "PEM certificates (a private CA) trusted beside the system's")
                .long("cacert"),
        )
        .arg(
            value("request", "METHOD", "method (default GET, or POST with -d)")
                .short('X')
                .long("request")
                .value_parser(method),
        )
        .arg(
            value("header", "Name: value", "request header, repeatable")
                .short('H')
                .long("header")
                .action(ArgAction::Append)
                .value_parser(header),
        )
        .arg(value("data", "BODY", "request body").short('d').long("data"))
        .arg(
            value("repeat", "N", "send the request N times through the same client")
                .long("repeat")
                .value_parser(repeat),
        )
        .arg(
            value(
                "concurrency",
                "N",
                "keep up to N of them in flight at once (default 1, at most 10000); \
                 lines come in the order the requests end",
            )
            .long("concurrency")
            .value_parser(concurrency),
        )
        .arg(
            value(
                "criticality",
                "LEVEL",
                "critical, default or sheddable (default: the policy's criticality)",
            )
            .long("criticality")
            .value_parser(|level: &str| level.parse::<crate::overload::Criticality>()),
        )
        .arg(
            Arg::new("url")
                .value_name("URL")
                .help("http or https URL")
                .required(true)
                .value_parser(url),
        )
}

/// What the command line asks for.
pub(super) struct Args {
    config: Option<String>,
    cacert: Option<String>,
    method: http::Method,
    headers: Vec<(String, String)>,
    body: Option<String>,
    repeat: usize,
    concurrency: usize,
    /// The requests' own criticality; `None`: the policy's.
    criticality: Option<crate::overload::Criticality>,
    url: url::Url,
}

impl Args {
    /// The arguments clap matched with [`command`]'s parsers.
    pub(super) fn from_matches(m: &ArgMatches) -> Result<Self, String> {
        let text = |name: &str| m.get_one::<String>(name).cloned();
        let body = text("data");
        // Like curl: a body makes the default method POST.
        let method = m
            .get_one::<http::Method>("request")
            .cloned()
            .unwrap_or(if body.is_some() {
                http::Method::POST
            } else {
                http::Method::GET
            });
        Ok(Args {
            config: text("config"),
            cacert: text("cacert"),
            method,
            headers: m
                .get_many::<(String, String)>("header")
                .map(|headers| headers.cloned().collect())
                .unwrap_or_default(),
            body,
            repeat: m.get_one::<usize>("repeat").copied().unwrap_or(1),
            concurrency: m.get_one::<usize>("concurrency").copied().unwrap_or(1),
            criticality: m.get_one("criticality").copied(),
            url: m.get_one::<url::Url>("url").cloned().ok_or("missing URL")?,
        })
    }
}

fn method(m: &str) -> Result<http::Method, String> {
    http::Method::from_bytes(m.as_bytes()).map_err(|_| format!("invalid method {m:?}"))
}

/// A `Name: value` header. A name that is not one may be a value with its colon missing: not
/// shown; a value is never shown.
fn header(h: &str) -> Result<(String, String), String> {
    let (name, v) = h
        .split_once(':')
        .ok_or("invalid header: expected 'Name: value'")?;
    let (name, v) = (name.trim(), v.trim());
    http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| "invalid header name")?;
    if http::HeaderValue::from_str(v).is_err() {
        return Err(format!("invalid value for header {name:?}"));
    }
    Ok((name.to_owned(), v.to_owned()))
}

fn repeat(text: &str) -> Result<usize, String> {
    count(text, usize::MAX).ok_or_else(|| "--repeat needs a positive whole number".to_owned())
}

fn concurrency(text: &str) -> Result<usize, String> {
    count(text, MAX_CONCURRENCY)
        .ok_or_else(|| format!("--concurrency needs a whole number from 1 to {MAX_CONCURRENCY}"))
}

/// A count from 1 to `max`. A bad one is not repeated: it may be a URL or a header value that
/// lost its place on the command line.
fn count(text: &str, max: usize) -> Option<usize> {
    text.parse().ok().filter(|n| (1..=max).contains(n))
}

/// An http or https URL; url's messages name the fault, never the input.
fn url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("invalid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported URL scheme {:?}: expected http or https",
            url.scheme()
        ));
    }
    Ok(url)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Bad input that is not bad usage (a policy file, a CA file): told on stderr, exit 2.
fn refused(message: impl std::fmt::Display) -> ExitCode {
    super::complain(NAME, message);
    ExitCode::from(2)
}

/// The certificates of the PEM file at `path`. Neither the path nor the file is repeated.
fn certificates(path: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--cacert: cannot read the file: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("--cacert: not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("--cacert: no PEM certificate in the file".to_owned());
    }
    Ok(certs)
}

/// Runs the probe: the client, then the requests.
pub(super) fn run(args: Args) -> ExitCode {
    let mut builder = Client::builder();
    if let Some(path) = &args.config {
        builder = builder.config_file(path);
    }
    if let Some(path) = &args.cacert {
        let certs = match certificates(path) {
            Ok(certs) => certs,
            Err(message) => return refused(message),
        };
        builder = builder.reqwest(move |b| b.tls_certs_merge(certs));
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(err) => return refused(err),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            super::complain(NAME, format_args!("cannot start the runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    if runtime.block_on(requests(client, Arc::new(args))) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Sends the requests, `concurrency` at a time, and prints a line as each ends; true when
/// every request succeeded.
async fn requests(client: Client, args: Arc<Args>) -> bool {
    let mut failed = false;
    let mut stdout = io::stdout();
    // Requests run as tasks, so they go on while a line is written; lines are written here
    // only, one at a time, so they never interleave.
    let mut in_flight = JoinSet::new();
    let mut started = 0;
    loop {
        while started < args.repeat && in_flight.len() < args.concurrency {
            let (client, args) = (client.clone(), args.clone());
            in_flight.spawn(async move { probe(&client, &args).await });
            started += 1;
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let line = match joined {
            Ok(line) => line,
            // Not expected (the probe does not panic); the panic hook has already said why.
            Err(_) => {
                super::complain(NAME, "a request ended in a panic");
                failed = true;
                continue;
            }
        };
        failed |= line.outcome != "success";
        let written = match serde_json::to_string(&line) {
            Ok(json) => writeln!(stdout, "{json}"),
            Err(e) => Err(io::Error::other(e)),
        };
        match written {
            Ok(()) => {}
            // The reader has what it wanted (`| head`): stop sending (dropping the set
            // cancels the requests still in flight).
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => {
                super::complain(NAME, format_args!("cannot write the output: {e}"));
                failed = true;
                break;
            }
        }
    }
    !failed
}

/// One request, its body read to the end.
async fn probe(client: &Client, args: &Args) -> Line {
    let shown_url = crate::redact::url(&args.url).to_string();
    let policy = client.policy_name(&args.method, &args.url).to_string();
    let criticality =
        (args.criticality).unwrap_or_else(|| client.criticality_of(&args.method, &args.url));
    let mut request = client.request(args.method.clone(), args.url.clone());
    if args.criticality.is_some() {
        request = request.criticality(criticality);
    }
    for (name, value) in &args.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &args.body {
        request = request.body(body.clone());
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let headers: http::HeaderMap = args
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.parse().ok()?, value.parse().ok()?)))
            .collect();
        tracing::debug!(
            method = %args.method,
            url = %shown_url,
            headers = ?crate::redact::headers(&headers),
            "probe sends"
        );
    }
    let started = Instant::now();
    // The body is read inside each attempt: one that breaks mid-stream or stalls is a failed
    // attempt, retried under the policy like any other.
    let (result, attempts): (Result<(u16, usize), Error>, Vec<AttemptLine>) =
        match request.send_buffered().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let attempts = match response.extensions().get::<RetryHistory>() {
                    Some(RetryHistory(history)) => history.iter().map(AttemptLine::of).collect(),
                    // A first-try success keeps no history: its one attempt, said in full.
                    None => vec![AttemptLine {
                        n: 1,
                        status: Some(status),
                        error_kind: None,
                        sent: true,
                        delay_before_ms: 0,
                        elapsed_ms: millis(started.elapsed()),
                        hedge: false,
                        cancelled: false,
                    }],
                };
                match response.bytes().await {
                    Ok(body) => (Ok((status, body.len())), attempts),
                    Err(body_error) => (Err(Error::from(body_error)), attempts),
                }
            }
            Err(err) => {
                let attempts = err.attempts().iter().map(AttemptLine::of).collect();
                (Err(err), attempts)
            }
        };
    let total_ms = millis(started.elapsed());
    let guards = client.overload_of(&args.method, &args.url);
    let quota =
        |read: fn(&crate::overload::OverloadHandle) -> Option<u64>| guards.as_ref().and_then(read);
    let mut line = Line {
        method: args.method.to_string(),
        url: shown_url,
        policy,
        outcome: "success",
        status: None,
        error_kind: None,
        transient: None,
        retry_after_ms: None,
        total_ms,
        body_bytes: 0,
        message: None,
        give_up: None,
        sent: true,
        server_quota_remaining: quota(|guards| guards.server_quota_remaining()),
        server_quota_reset_ms: quota(|guards| guards.server_quota_reset().map(millis)),
        criticality: criticality.as_str(),
        adaptive_limit: guards.as_ref().and_then(|g| g.adaptive_limit()),
        adaptive_in_flight: guards.as_ref().and_then(|g| g.adaptive_in_flight()),
        throttle_probability: (guards.as_ref()).and_then(|g| g.throttle_probability(criticality)),
        attempts,
    };
    match &result {
        Ok((status, body_bytes)) => {
            line.status = Some(*status);
            line.body_bytes = *body_bytes;
        }
        Err(err) => {
            line.outcome = "error";
            line.status = err.status().map(|s| s.as_u16());
            line.error_kind = Some(err.kind().as_str());
            line.transient = Some(err.is_transient());
            line.retry_after_ms = err.retry_after().map(millis);
            line.message = Some(message(err));
            line.give_up = err.give_up().map(crate::GiveUp::as_str);
            line.sent = err.sent();
        }
    }
    line
}

/// The error's line, then why (its `source()` chain, which the library keeps redacted): a
/// refused redirect or a refused connection says so.
fn message(err: &Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
