//! `probe`: try a policy against a real endpoint, like curl, one JSON line per request.
//!
//! ```text
//! cargo run --example probe -- [--config FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] URL
//! ```
//!
//! Each request's body is read to the end inside each attempt (a body that stalls is a
//! timeout, not a success; one that breaks mid-stream is retried under the policy).
//! Output on stdout, one object per request:
//! `{"method","url","policy","outcome","status","error_kind","transient","retry_after_ms",
//! "total_ms","body_bytes","message","attempts":[{"n","status","error_kind","sent",
//! "delay_before_ms","elapsed_ms"}]}`. Exit code 0 when every request succeeded, 1 when any
//! failed, 2 for bad usage or a bad policy file (a message on stderr, nothing on stdout).
//! Tracing goes to stderr and honours `RUST_LOG`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use resilient_http::retry::RetryHistory;
use resilient_http::{Attempt, AttemptOutcome, Client, Delivery, Error};
use serde_json::{Value, json};

const USAGE: &str =
    "usage: probe [--config FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] URL";

struct Args {
    config: Option<String>,
    method: http::Method,
    headers: Vec<(String, String)>,
    body: Option<String>,
    repeat: usize,
    url: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut config = None;
    let mut method = None;
    let mut headers = Vec::new();
    let mut body = None;
    let mut repeat = 1;
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
                    .ok_or_else(|| format!("invalid header {h:?}: expected 'Name: value'"))?;
                let (name, v) = (name.trim(), v.trim());
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(v).is_err()
                {
                    return Err(format!("invalid header {name:?}"));
                }
                headers.push((name.to_owned(), v.to_owned()));
            }
            "-d" | "--data" => body = Some(value("-d")?),
            "--repeat" => {
                let n = value("--repeat")?;
                repeat = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--repeat needs a positive number, got {n:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option {flag}"));
            }
            _ if url.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => url = Some(arg),
        }
    }
    let url = url.ok_or("missing URL")?;
    // Like curl: a body makes the default method POST.
    let method = method.unwrap_or(if body.is_some() {
        http::Method::POST
    } else {
        http::Method::GET
    });
    Ok(Args {
        config,
        method,
        headers,
        body,
        repeat,
        url,
    })
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
    })
}

/// One request, its body read to the end.
async fn probe(client: &Client, args: &Args) -> Value {
    let url = url::Url::parse(&args.url).ok();
    let shown_url = url.as_ref().map_or_else(
        || "(invalid URL)".to_owned(),
        |u| resilient_http::redact::url(u).to_string(),
    );
    let policy = url
        .as_ref()
        .map_or("default", |u| client.policy_name(&args.method, u))
        .to_owned();
    let mut request = client.request(args.method.clone(), args.url.as_str());
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
            "message": err.to_string(),
        }),
    };
    if let (Value::Object(record), Value::Object(fields)) = (&mut record, fields) {
        record.extend(fields);
        record.insert("total_ms".into(), json!(total_ms));
        record.insert("attempts".into(), Value::Array(attempts));
    }
    record
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("probe: {message}");
            }
            eprintln!("{USAGE}");
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
            eprintln!("probe: {err}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for _ in 0..args.repeat {
        let record = probe(&client, &args).await;
        failed |= record["outcome"] != "success";
        println!("{record}");
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
