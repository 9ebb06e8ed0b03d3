//! `probe`: try a policy against a real endpoint, like curl, one JSON line per request.
//!
//! ```text
//! cargo run --example probe -- [--config FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] [--concurrency N] URL
//! ```
//!
//! `--concurrency N` keeps up to N of the `--repeat` requests in flight at once (default 1,
//! at most 10,000); the lines then come in the order the requests end.
//!
//! Each request's body is read to the end inside each attempt (a body that stalls is a
//! timeout, not a success; one that breaks mid-stream is retried under the policy).
//! Output on stdout, one object per request:
//! `{"method","url","policy","outcome","status","error_kind","transient","retry_after_ms",
//! "total_ms","body_bytes","message","attempts":[{"n","status","error_kind","sent",
//! "delay_before_ms","elapsed_ms","hedge","cancelled"}]}`. An attempt's `hedge` says it was
//! a hedge (sent while another was in flight); `cancelled`, that another answered first and
//! it was dropped (its `status` and `error_kind` are then null). Exit code 0 when every request succeeded, 1 when any
//! failed, 2 for bad usage or a bad policy file (a message on stderr, nothing on stdout).
//! Tracing goes to stderr and honours `RUST_LOG`. A reader that stops early (`| head`) ends
//! the run quietly, with the exit code of the requests made so far.

use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use resilient_http::retry::RetryHistory;
use resilient_http::{Attempt, AttemptOutcome, Client, Delivery, Error};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const USAGE: &str = "usage: probe [--config FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] \
                     [--repeat N] [--concurrency N] URL";

/// The most requests `--concurrency` keeps in flight: far above what one client needs to
/// load a server, far below running out of sockets or file descriptors.
const MAX_CONCURRENCY: usize = 10_000;

const HELP: &str = "
Sends the request through a resilient-http client and prints one JSON line per request.

  --config FILE          policy file (TOML)
  -X, --request METHOD   method (default GET, or POST with -d)
  -H, --header 'N: v'    request header, repeatable
  -d, --data BODY        request body
  --repeat N             send the request N times through the same client
  --concurrency N        keep up to N of them in flight at once (default 1, at most 10000);
                         lines come in the order the requests end
  -h, --help             this text

Exit code: 0 every request succeeded, 1 one failed, 2 bad usage or policy file.";

struct Args {
    config: Option<String>,
    method: http::Method,
    headers: Vec<(String, String)>,
    body: Option<String>,
    repeat: usize,
    concurrency: usize,
    url: url::Url,
}

enum Command {
    Help,
    Probe(Args),
}

/// Bad usage is told on stderr; no message repeats a header value or a URL, which may hold a
/// secret.
fn parse_args(args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args
        .enumerate()
        .map(|(i, arg)| {
            arg.into_string()
                .map_err(|_| format!("argument {} is not valid UTF-8", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let mut config = None;
    let mut method = None;
    let mut headers = Vec::new();
    let mut body = None;
    let mut repeat = 1;
    let mut concurrency = 1;
    let mut url = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" => config = Some(value("--config")?),
            "-X" | "--request" => {
                let m = value("-X")?;
                method = Some(
                    http::Method::from_bytes(m.as_bytes())
                        .map_err(|_| format!("invalid method {m:?}"))?,
                );
            }
            "-H" | "--header" => {
                let h = value("-H")?;
                let (name, v) = h
                    .split_once(':')
                    .ok_or("invalid header: expected 'Name: value'")?;
                let (name, v) = (name.trim(), v.trim());
                // A name that is not one may be a value with its colon missing: not shown.
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| "invalid header name")?;
                if http::HeaderValue::from_str(v).is_err() {
                    return Err(format!("invalid value for header {name:?}"));
                }
                headers.push((name.to_owned(), v.to_owned()));
            }
            "-d" | "--data" => body = Some(value("-d")?),
            "--repeat" => {
                repeat = count(&value("--repeat")?, usize::MAX)
                    .ok_or("--repeat needs a positive whole number")?;
            }
            "--concurrency" => {
                concurrency =
                    count(&value("--concurrency")?, MAX_CONCURRENCY).ok_or_else(|| {
                        format!("--concurrency needs a whole number from 1 to {MAX_CONCURRENCY}")
                    })?;
            }
            "-h" | "--help" => return Ok(Command::Help),
            flag if flag.starts_with('-') && flag.len() > 1 => {
                // Not what follows an `=`, which may be a secret.
                let flag = flag.split('=').next().unwrap_or(flag);
                return Err(format!("unknown option {flag}"));
            }
            _ if url.is_some() => return Err("more than one URL".to_owned()),
            _ => url = Some(arg),
        }
    }
    let url = url.ok_or("missing URL")?;
    // url's messages name the fault, never the input.
    let url = url::Url::parse(&url).map_err(|e| format!("invalid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported URL scheme {:?}: expected http or https",
            url.scheme()
        ));
    }
    // Like curl: a body makes the default method POST.
    let method = method.unwrap_or(if body.is_some() {
        http::Method::POST
    } else {
        http::Method::GET
    });
    Ok(Command::Probe(Args {
        config,
        method,
        headers,
        body,
        repeat,
        concurrency,
        url,
    }))
}

/// A count from 1 to `max`. A bad one is not repeated: it may be a URL or a header value that
/// lost its place on the command line.
fn count(text: &str, max: usize) -> Option<usize> {
    text.parse().ok().filter(|n| (1..=max).contains(n))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn attempt_json(a: &Attempt) -> Value {
    let (status, kind) = match a.outcome {
        AttemptOutcome::Status(s) => (json!(s.as_u16()), Value::Null),
        AttemptOutcome::Error(k) => (Value::Null, json!(k.as_str())),
        AttemptOutcome::Body { status, kind } => (json!(status.as_u16()), json!(kind.as_str())),
        _ => (Value::Null, Value::Null),
    };
    json!({
        "n": a.number,
        "status": status,
        "error_kind": kind,
        "sent": a.delivery != Delivery::NotSent,
        "delay_before_ms": millis(a.delay_before),
        "elapsed_ms": millis(a.duration),
        "hedge": a.hedge,
        "cancelled": a.outcome == AttemptOutcome::Cancelled,
    })
}

/// One request, its body read to the end.
async fn probe(client: &Client, args: &Args) -> Value {
    let shown_url = resilient_http::redact::url(&args.url).to_string();
    let policy = client.policy_name(&args.method, &args.url).to_string();
    let mut request = client.request(args.method.clone(), args.url.clone());
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
            headers = ?resilient_http::redact::headers(&headers),
            "probe sends"
        );
    }
    let started = Instant::now();
    let mut record = json!({
        "method": args.method.as_str(),
        "url": shown_url,
        "policy": policy,
    });
    // The body is read inside each attempt: one that breaks mid-stream or stalls is a failed
    // attempt, retried under the policy like any other.
    let (result, attempts): (Result<(u16, usize), Error>, Vec<Value>) =
        match request.send_buffered().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let attempts = match response.extensions().get::<RetryHistory>() {
                    Some(RetryHistory(history)) => history.iter().map(attempt_json).collect(),
                    None => vec![json!({
                        "n": 1, "status": status, "error_kind": null, "sent": true,
                        "delay_before_ms": 0, "elapsed_ms": millis(started.elapsed()),
                    })],
                };
                match response.bytes().await {
                    Ok(body) => (Ok((status, body.len())), attempts),
                    Err(body_error) => (Err(Error::from(body_error)), attempts),
                }
            }
            Err(err) => {
                let attempts = err.attempts().iter().map(attempt_json).collect();
                (Err(err), attempts)
            }
        };
    let total_ms = millis(started.elapsed());
    let fields = match &result {
        Ok((status, body_bytes)) => json!({
            "outcome": "success", "status": status, "error_kind": null, "transient": null,
            "retry_after_ms": null, "body_bytes": body_bytes, "message": null,
        }),
        Err(err) => json!({
            "outcome": "error",
            "status": err.status().map(|s| s.as_u16()),
            "error_kind": err.kind().as_str(),
            "transient": err.is_transient(),
            "retry_after_ms": err.retry_after().map(millis),
            "body_bytes": 0,
            "message": message(err),
        }),
    };
    if let (Value::Object(record), Value::Object(fields)) = (&mut record, fields) {
        record.extend(fields);
        record.insert("total_ms".into(), json!(total_ms));
        record.insert("attempts".into(), Value::Array(attempts));
    }
    record
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

/// `eprintln!` panics when stderr is gone; the exit code still tells.
fn complain(message: impl Display) {
    let _ = writeln!(io::stderr(), "probe: {message}");
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(io::stderr)
        .init();
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Probe(args)) => args,
        Ok(Command::Help) => {
            let _ = writeln!(io::stdout(), "{USAGE}\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            complain(format_args!("{message}\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    let mut builder = Client::builder();
    if let Some(path) = &args.config {
        builder = builder.config_file(path);
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(err) => {
            complain(err);
            return ExitCode::from(2);
        }
    };
    let args = Arc::new(args);
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
        let record = match joined {
            Ok(record) => record,
            // Not expected (the probe does not panic); the panic hook has already said why.
            Err(_) => {
                complain("a request ended in a panic");
                failed = true;
                continue;
            }
        };
        failed |= record["outcome"] != "success";
        match writeln!(stdout, "{record}") {
            Ok(()) => {}
            // The reader has what it wanted (`| head`): stop sending (dropping the set
            // cancels the requests still in flight).
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => {
                complain(format_args!("cannot write the output: {e}"));
                failed = true;
                break;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
