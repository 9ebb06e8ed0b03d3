//! The `probe` example, run as a user runs it, against the fault server: its flags, its JSON
//! lines and its exit codes are a public contract.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use resilient_http::testkit::{FaultServer, Reply};
use serde_json::Value;

/// The installed command line, `resilient-http`, which `cargo test` builds for the tests.
const BINARY: &str = env!("CARGO_BIN_EXE_resilient-http");

/// The `probe` example (a thin wrapper of the same code), which `cargo test` builds with the
/// tests (built here if it did not: `cargo test --test probe` builds no examples).
fn example_binary() -> PathBuf {
    let dir = std::env::current_exe().unwrap();
    let debug = dir.parent().unwrap().parent().unwrap();
    let binary = debug.join("examples").join("probe");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "probe", "--features", "cli"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    binary
}

/// `resilient-http probe`, with `args`.
fn probe_command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BINARY);
    command.arg("probe");
    command
}

async fn probe(args: &[impl AsRef<OsStr>]) -> Output {
    probe_logging(args, None).await
}

/// The probe with `RUST_LOG` set to `filter` (unset for `None`).
async fn probe_logging(args: &[impl AsRef<OsStr>], filter: Option<&str>) -> Output {
    let mut command = probe_command();
    command.args(args);
    match filter {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    command.output().await.unwrap()
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn policy_file(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::new(text)
}

/// A file under the system temp dir, removed on drop.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);

    impl TempPath {
        pub fn new(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "probe-{}-{}.toml",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::write(&path, text).unwrap();
            TempPath(path)
        }

        pub fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[tokio::test]
async fn a_retried_success_prints_one_line_with_every_attempt() {
    let server = FaultServer::start().await.unwrap();
    server.script("/a", [Reply::status(503), Reply::ok("hi")]);
    let output = probe(&[&server.url("/a")]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let records = lines(&output);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["method"], "GET");
    assert_eq!(r["url"], server.url("/a"));
    assert_eq!(r["policy"], "default");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["status"], 200);
    assert_eq!(r["error_kind"], Value::Null);
    assert_eq!(r["transient"], Value::Null);
    assert_eq!(r["retry_after_ms"], Value::Null);
    assert_eq!(r["message"], Value::Null);
    assert_eq!(r["body_bytes"], 2);
    assert!(r["total_ms"].is_u64());
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["n"], 1);
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[0]["sent"], true);
    assert_eq!(attempts[0]["delay_before_ms"], 0);
    assert_eq!(attempts[1]["status"], 200);
    assert!(attempts[1]["elapsed_ms"].is_u64());
}

#[tokio::test]
async fn failures_exit_1_and_say_what_went_wrong_without_secrets() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/gone",
        [Reply::status(503), Reply::status(404), Reply::status(404)],
    );
    let url = format!("http://bob:hunter2@{}/gone?api_key=s3cret", server.addr());
    let args = [
        "--repeat",
        "2",
        "-H",
        "Authorization: Bearer t0ken",
        "-H",
        "Cookie: sid=c00kie",
        &url,
    ];
    // Everything every crate traces goes to stderr.
    let output = probe_logging(&args, Some("trace")).await;
    assert_eq!(output.status.code(), Some(1));
    let records = lines(&output);
    assert_eq!(records.len(), 2, "--repeat 2");
    for r in &records {
        assert_eq!(r["outcome"], "error");
        assert_eq!(r["error_kind"], "status");
        assert_eq!(r["status"], 404);
        assert_eq!(r["transient"], false);
    }
    assert_eq!(records[0]["attempts"].as_array().unwrap().len(), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("retry scheduled"), "{stderr}");
    assert!(stderr.contains("authorization"), "{stderr}");
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in ["hunter2", "s3cret", "t0ken", "c00kie"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    assert_eq!(server.hits("/gone"), 3);
    let received = &server.requests("/gone")[0];
    let auth: Vec<_> = received.headers.get_all("authorization").iter().collect();
    assert!(auth.iter().any(|v| *v == "Bearer t0ken"), "{auth:?}");
}

#[tokio::test]
async fn a_stalled_body_is_a_timeout_not_a_success() {
    let server = FaultServer::start().await.unwrap();
    server.script("/stall", [Reply::stall_body(200, "partial")]);
    let config = policy_file("[default]\nattempt_timeout = \"300ms\"\nmax_attempts = 1\n");
    let output = probe(&["--config", config.as_str(), &server.url("/stall")]).await;
    assert_eq!(output.status.code(), Some(1));
    let r = &lines(&output)[0];
    assert_eq!(r["outcome"], "error");
    assert_eq!(r["error_kind"], "timeout");
    // The head said 200; the body never came.
    assert_eq!(r["status"], 200);
    assert_eq!(r["attempts"][0]["status"], 200);
    assert_eq!(r["attempts"][0]["error_kind"], "timeout");
}

#[tokio::test]
async fn a_body_cut_off_once_is_retried_like_any_failed_attempt() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/cut",
        [
            Reply::body_then_reset(200, "par"),
            Reply::ok("partial no more"),
        ],
    );
    let output = probe(&[&server.url("/cut")]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let r = &lines(&output)[0];
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["body_bytes"], 15);
    assert_eq!(r["attempts"][0]["status"], 200);
    assert_eq!(r["attempts"][0]["error_kind"], "reset");
    assert_eq!(r["attempts"][1]["status"], 200);
    assert_eq!(r["attempts"][1]["error_kind"], Value::Null);
    assert_eq!(server.hits("/cut"), 2);
}

#[tokio::test]
async fn method_headers_body_and_the_policy_file_are_used() {
    let server = FaultServer::start().await.unwrap();
    server.script("/charge", [Reply::status(503)]);
    let config = policy_file(&format!(
        "[[endpoint]]\nname = \"payments\"\nmatch = {{ host = \"{}\", path = \"/charge\" }}\nmax_attempts = 1\n",
        server.addr()
    ));
    let output = probe(&[
        "--config",
        config.as_str(),
        "-X",
        "PUT",
        "-H",
        "X-Trace: abc",
        "-d",
        "{\"amount\":1}",
        &server.url("/charge"),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let r = &lines(&output)[0];
    assert_eq!(r["method"], "PUT");
    assert_eq!(r["policy"], "payments");
    assert_eq!(r["attempts"].as_array().unwrap().len(), 1);
    let received = &server.requests("/charge")[0];
    assert_eq!(received.method, http::Method::PUT);
    assert_eq!(received.headers["x-trace"], "abc");
    assert_eq!(received.body, "{\"amount\":1}");
}

#[tokio::test]
async fn bad_usage_and_bad_files_exit_2_with_nothing_on_stdout() {
    let bad_file = policy_file("[default]\natempts = 2\n");
    for args in [
        vec![],
        vec!["--repeat", "0", "http://127.0.0.1:1/"],
        vec!["--nope", "http://127.0.0.1:1/"],
        vec!["-H", "no-colon", "http://127.0.0.1:1/"],
        vec!["-H", "bad name: v", "http://127.0.0.1:1/"],
        vec!["--config", bad_file.as_str(), "http://127.0.0.1:1/"],
        vec!["--criticality", "urgent", "http://127.0.0.1:1/"],
    ] {
        let output = probe(&args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    let output = probe(&["--config", bad_file.as_str(), "http://127.0.0.1:1/"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":2: unknown key \"atempts\" in [default]"),
        "{stderr}"
    );
}

/// A panic is exit 101 and its message repeats the argument, secrets and all.
fn assert_no_panic(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
}

#[tokio::test]
async fn an_argument_that_is_not_utf8_is_bad_usage_and_is_not_repeated() {
    let bytes = |text: &[u8]| OsString::from_vec(text.to_vec());
    for args in [
        vec![
            bytes(b"-H"),
            bytes(b"Authorization: Bearer s3cr3t-\xff"),
            bytes(b"http://127.0.0.1:1/"),
        ],
        vec![bytes(b"http://bob:s3cr3t@127.0.0.1:1/?token=T0K\xe9")],
        vec![
            bytes(b"--config"),
            bytes(b"/tmp/s3cr3t-\xff.toml"),
            bytes(b"http://127.0.0.1:1/"),
        ],
    ] {
        let output = probe(&args).await;
        assert_no_panic(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not valid UTF-8"), "{stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
}

#[tokio::test]
async fn bad_usage_never_repeats_a_header_value_or_a_second_url() {
    for args in [
        vec!["-H", "Authorization Bearer s3cr3t", "http://127.0.0.1:1/"],
        vec!["-H", "Authorization Bearer s3cr3t:x", "http://127.0.0.1:1/"],
        vec!["--token=s3cr3t", "http://127.0.0.1:1/"],
        vec![
            "-H",
            "Authorization: Bearer s3cr3t\u{1}",
            "http://127.0.0.1:1/",
        ],
        vec!["http://127.0.0.1:1/", "http://bob:s3cr3t@127.0.0.1:1/"],
    ] {
        let output = probe(&args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.is_empty() && !stderr.contains("s3cr3t"), "{stderr}");
    }
}

#[tokio::test]
async fn help_prints_the_usage_on_stdout_and_exits_0() {
    for flag in ["--help", "-h"] {
        let output = probe(&[flag]).await;
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with("usage: resilient-http probe "),
            "{stdout}"
        );
        assert!(output.stderr.is_empty(), "{output:?}");
    }
}

#[tokio::test]
async fn an_unusable_url_is_bad_usage_that_says_why() {
    for (url, why) in [
        ("not a url", "relative URL without a base"),
        ("http://bob:s3cr3t@[::1/", "invalid IPv6 address"),
        ("ftp://127.0.0.1/", "scheme"),
    ] {
        let output = probe(&[url]).await;
        assert_eq!(output.status.code(), Some(2), "{url}");
        assert!(output.stdout.is_empty(), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{url}: {stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
}

#[tokio::test]
async fn a_reader_that_stops_early_ends_the_probe_quietly() {
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    // Far more output than a pipe buffers (64 KiB), so the probe must write after we are gone.
    let mut child = probe_command()
        .args(["--repeat", "2000", &server.url("/a")])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0; 9];
    tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first)
        .await
        .unwrap();
    assert_eq!(&first, b"{\"method\"");
    drop(stdout);
    let output = child.wait_with_output().await.unwrap();
    assert_no_panic(&output);
    // Every request it made succeeded.
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    assert!(server.hits("/a") < 2000);
}

/// `/redir` answers 302 to `/final` on the same server, with credentials and a token.
async fn redirecting_to_user_info() -> FaultServer {
    let server = FaultServer::start().await.unwrap();
    let target = format!("http://bob:REDIRPW@{}/final?token=REDIRTOK", server.addr());
    server.script("/redir", [Reply::status(302).header("Location", target)]);
    server
}

#[tokio::test]
async fn a_redirect_to_a_url_with_user_info_is_refused_and_its_secret_never_logged() {
    let server = redirecting_to_user_info().await;
    // Every crate's DEBUG events (hyper-util's pool among them) go to stderr.
    let output = probe_logging(&[&server.url("/redir")], Some("debug")).await;
    assert_no_panic(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // hyper-util's DEBUG events were captured (it logs the pool key in the same way).
    assert!(stderr.contains("hyper_util"), "{stderr}");
    assert!(stderr.contains("connected to 127.0.0.1"), "{stderr}");
    let everything = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    for secret in ["REDIRPW", "bob:", "REDIRTOK"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    assert_eq!(output.status.code(), Some(1), "{everything}");
    let r = &lines(&output)[0];
    assert_eq!(r["outcome"], "error");
    assert_eq!(r["error_kind"], "transport");
    assert_eq!(r["transient"], false);
    assert_eq!(r["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(server.hits("/redir"), 1, "permanent: not retried");
    assert_eq!(server.hits("/final"), 0, "refused: not followed");
}

/// The same refusal from a client of the library's own, the error as a caller sees it.
#[tokio::test]
async fn a_client_built_by_the_builder_refuses_a_redirect_to_user_info() {
    let server = redirecting_to_user_info().await;
    let client = resilient_http::Client::builder().build().unwrap();
    let err = client.get(server.url("/redir")).send().await.unwrap_err();
    assert_eq!(err.kind(), resilient_http::ErrorKind::Transport, "{err}");
    assert!(!err.is_transient());
    let mut shown = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(shown.contains("redirect"), "{shown}");
    for secret in ["REDIRPW", "bob", "REDIRTOK"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert_eq!((server.hits("/redir"), server.hits("/final")), (1, 0));

    // Other redirects are followed as before, and a loop still ends.
    server.script("/moved", [Reply::status(301).header("Location", "/final")]);
    let response = client.get(server.url("/moved")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits("/final"), 1);
    server.script("/loop", [Reply::status(302).header("Location", "/loop")]);
    let err = client.get(server.url("/loop")).send().await.unwrap_err();
    assert_eq!(err.kind(), resilient_http::ErrorKind::Transport, "{err}");
    assert_eq!(server.hits("/loop"), 11, "reqwest's limit: 10 redirects");
}

#[tokio::test]
async fn concurrency_keeps_n_requests_in_flight_with_one_whole_line_each() {
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let output = probe(&["--concurrency", "8", "--repeat", "200", &server.url("/a")]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    // A line written in pieces by two requests would not parse.
    let records = lines(&output);
    assert_eq!(records.len(), 200);
    for r in &records {
        assert_eq!(r["outcome"], "success", "{r}");
        assert_eq!(r["body_bytes"], 2, "{r}");
        assert_eq!(r["attempts"].as_array().unwrap().len(), 1, "{r}");
    }
    assert_eq!(server.hits("/a"), 200);

    // One at a time, 200 answers of 50 ms each take 10 s; eight at a time about 1.25 s.
    server.script("/slow", [Reply::ok("hi").delay(Duration::from_millis(50))]);
    let started = Instant::now();
    let output = probe(&[
        "--concurrency",
        "8",
        "--repeat",
        "200",
        &server.url("/slow"),
    ])
    .await;
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(lines(&output).len(), 200);
    assert_eq!(server.hits("/slow"), 200);
    assert!(took < Duration::from_millis(200 * 50 / 4), "{took:?}");
}

#[tokio::test]
async fn a_bad_concurrency_or_repeat_is_bad_usage_that_repeats_nothing() {
    let secret = "http://bob:s3cr3t@127.0.0.1:1/";
    for (flag, value) in [
        ("--concurrency", "0"),
        ("--concurrency", "-1"),
        ("--concurrency", "eight"),
        ("--concurrency", "1.5"),
        ("--concurrency", ""),
        ("--concurrency", "10001"),
        ("--concurrency", "99999999999999999999999"),
        ("--concurrency", secret),
        ("--repeat", "0"),
        ("--repeat", secret),
    ] {
        let output = probe(&["--repeat", "3", flag, value, "http://127.0.0.1:1/"]).await;
        assert_no_panic(&output);
        assert_eq!(output.status.code(), Some(2), "{flag} {value:?}");
        assert!(output.stdout.is_empty(), "{flag} {value:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
    let output = probe(&["http://127.0.0.1:1/", "--concurrency"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    // The bounds themselves are fine; more in flight than requests is too.
    let server = FaultServer::start().await.unwrap();
    for concurrency in ["1", "10000"] {
        let output = probe(&[
            "--concurrency",
            concurrency,
            "--repeat",
            "2",
            &server.url("/a"),
        ])
        .await;
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        assert_eq!(lines(&output).len(), 2);
    }
    assert_eq!(server.hits("/a"), 4);
    let output = probe(&["--help"]).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("--concurrency N"));
}

/// Sends `repeat` GETs, `concurrency` at a time, to an endpoint that always answers 503,
/// under the policy `config`; returns the lines and how many requests the server saw.
async fn outage(config: &str, repeat: usize, concurrency: usize) -> (Vec<Value>, usize) {
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    server.script("/down", [Reply::status(503)]);
    let config = policy_file(config);
    let (repeat, concurrency) = (repeat.to_string(), concurrency.to_string());
    let output = probe(&[
        "--config",
        config.as_str(),
        "--repeat",
        &repeat,
        "--concurrency",
        &concurrency,
        &server.url("/down"),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    (lines(&output), server.hits("/down"))
}

/// The breaker would stop the calls itself; the budget is what is measured. Short backoffs
/// keep the run fast, and within one budget window, where the budget is at its most generous
/// (its `min_per_second` reserve is not yet replenished).
const OUTAGE: &str = "[default.breaker]\nenabled = false\n\
                      [default.backoff]\nbase = \"1ms\"\nmax = \"5ms\"\n";

#[tokio::test]
async fn a_full_outage_costs_at_most_1_25x_the_requests_with_the_default_budget() {
    let requests = 4000;
    let (records, hits) = outage(OUTAGE, requests, 16).await;
    let ratio = hits as f64 / requests as f64;
    println!(
        "full outage, default retry budget: {hits} server hits / {requests} requests = {ratio:.3}"
    );
    assert_eq!(records.len(), requests);
    assert!(ratio <= 1.25, "{ratio}");
    let mut exhausted = 0;
    for r in &records {
        assert_eq!(r["outcome"], "error", "{r}");
        assert_eq!(r["status"], 503, "the last attempt's status is kept: {r}");
        assert_eq!(r["transient"], true, "{r}");
        match r["error_kind"].as_str().unwrap() {
            "budget_exhausted" => exhausted += 1,
            "status" => assert_eq!(r["attempts"].as_array().unwrap().len(), 3, "{r}"),
            other => panic!("{other}: {r}"),
        }
    }
    assert!(exhausted > 0);
    let attempts: usize = records
        .iter()
        .map(|r| r["attempts"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        attempts, hits,
        "every request the server saw is an attempt in a line"
    );
}

#[tokio::test]
async fn a_full_outage_costs_3x_the_requests_without_the_budget() {
    let requests = 1500;
    let config = format!("{OUTAGE}[default.retry_budget]\nenabled = false\n");
    let (records, hits) = outage(&config, requests, 16).await;
    let ratio = hits as f64 / requests as f64;
    println!("full outage, no retry budget: {hits} server hits / {requests} requests = {ratio:.3}");
    assert_eq!(records.len(), requests);
    assert_eq!(hits, 3 * requests);
    for r in &records {
        assert_eq!(r["error_kind"], "status", "{r}");
        assert_eq!(r["attempts"].as_array().unwrap().len(), 3, "{r}");
    }
}

/// Runs the probe with the policy `config` and `args` against `server`'s `path`.
async fn probe_with(config: &str, args: &[&str], url: &str) -> (Output, Vec<Value>) {
    let config = policy_file(config);
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    all.push(url);
    let output = probe(&all).await;
    let records = lines(&output);
    (output, records)
}

#[tokio::test]
async fn an_empty_retry_budget_from_the_file_is_budget_exhausted_with_the_last_status() {
    let server = FaultServer::start().await.unwrap();
    server.script("/busy", [Reply::status(503)]);
    let config = "[default]\nmax_attempts = 3\n\
                  [default.retry_budget]\nenabled = true\nratio = 0.0\nmin_per_second = 0\nwindow = \"1s\"\n";
    let (output, records) = probe_with(config, &[], &server.url("/busy")).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let r = &records[0];
    assert_eq!(r["error_kind"], "budget_exhausted", "{r}");
    assert_eq!(r["status"], 503, "{r}");
    assert_eq!(r["transient"], true, "{r}");
    assert_eq!(r["attempts"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(server.hits("/busy"), 1);
}

#[tokio::test]
async fn a_retry_after_holds_the_endpoint_for_the_next_request_unless_the_file_says_not() {
    for (hold, hits) in [(true, 1), (false, 2)] {
        let server = FaultServer::start().await.unwrap();
        server.script("/held", [Reply::status(429).retry_after_secs(10)]);
        let config = format!("[default]\ndeadline = \"2s\"\nhold_on_retry_after = {hold}\n");
        let (output, records) = probe_with(&config, &["--repeat", "2"], &server.url("/held")).await;
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        // The wait is past the deadline: no retry, the caller learns it.
        assert_eq!(records[0]["error_kind"], "status", "{}", records[0]);
        assert_eq!(records[0]["status"], 429, "{}", records[0]);
        assert_eq!(records[0]["retry_after_ms"], 10_000, "{}", records[0]);
        let r = &records[1];
        if hold {
            // Not sent: failed at once, with what is left of the hold.
            assert_eq!(r["error_kind"], "rate_limited", "{r}");
            let left = r["retry_after_ms"].as_u64().unwrap();
            assert!(left > 0 && left <= 10_000, "{r}");
            assert_eq!(r["attempts"][0]["sent"], false, "{r}");
            let message = r["message"].as_str().unwrap();
            assert!(message.contains("the server asked to wait"), "{r}");
        } else {
            assert_eq!(r["error_kind"], "status", "{r}");
        }
        assert_eq!(server.hits("/held"), hits, "hold_on_retry_after = {hold}");
    }
}

#[tokio::test]
async fn a_rate_limit_from_the_file_refuses_what_would_wait_past_the_deadline() {
    let server = FaultServer::start().await.unwrap();
    let config = "[default.rate_limit]\nrate = 1\nper = \"1h\"\nburst = 1\n";
    let (output, records) = probe_with(config, &["--repeat", "3"], &server.url("/a")).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(records[0]["outcome"], "success", "{}", records[0]);
    for r in &records[1..] {
        assert_eq!(r["error_kind"], "rate_limited", "{r}");
        assert!(r["retry_after_ms"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["attempts"][0]["sent"], false, "{r}");
    }
    assert_eq!(server.hits("/a"), 1);
}

#[tokio::test]
async fn a_bulkhead_from_the_file_refuses_a_second_call_in_flight() {
    let server = FaultServer::start().await.unwrap();
    // Long enough that the second request surely starts while the first is out.
    server.script("/slow", [Reply::ok("hi").delay(Duration::from_secs(1))]);
    let config = "[default.bulkhead]\nmax_in_flight = 1\nqueue_timeout = \"0s\"\n";
    let args = ["--repeat", "2", "--concurrency", "2"];
    let (output, records) = probe_with(config, &args, &server.url("/slow")).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let mut kinds: Vec<_> = records.iter().map(|r| r["error_kind"].clone()).collect();
    kinds.sort_by_key(|k| k.to_string());
    assert_eq!(
        kinds,
        [Value::from("bulkhead_full"), Value::Null],
        "{records:?}"
    );
    let refused = records.iter().find(|r| r["error_kind"] == "bulkhead_full");
    // Never sent: no attempt at all (a rate limit or a hold shows one, not sent).
    let attempts = refused.unwrap()["attempts"].as_array().unwrap();
    assert!(attempts.iter().all(|a| a["sent"] == false), "{records:?}");
    assert_eq!(server.hits("/slow"), 1);
}

#[tokio::test]
async fn a_hedge_from_the_file_shows_in_the_attempts() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slow",
        [
            Reply::ok("slow").delay(Duration::from_secs(5)),
            Reply::ok("fast"),
        ],
    );
    let config = "[default.hedge]\nafter = \"50ms\"\nmax = 1\n";
    let (output, records) = probe_with(config, &[], &server.url("/slow")).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let r = &records[0];
    assert_eq!(r["body_bytes"], 4, "{r}");
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{r}");
    assert_eq!(
        (
            &attempts[0]["n"],
            &attempts[0]["hedge"],
            &attempts[0]["cancelled"]
        ),
        (&1.into(), &false.into(), &true.into()),
        "{r}"
    );
    assert_eq!(attempts[0]["status"], Value::Null, "{r}");
    assert_eq!(
        (
            &attempts[1]["n"],
            &attempts[1]["hedge"],
            &attempts[1]["cancelled"]
        ),
        (&2.into(), &true.into(), &false.into()),
        "{r}"
    );
    assert_eq!(attempts[1]["status"], 200, "{r}");
    assert!(r["total_ms"].as_u64().unwrap() < 5000, "{r}");
}

/// Fails unless `json` has each of `keys`, in this order (each after the one before).
fn assert_keys_in_order<'a>(json: &'a str, keys: &[&str]) -> &'a str {
    let mut rest = json;
    for key in keys {
        let needle = format!("\"{key}\":");
        let Some(at) = rest.find(&needle) else {
            panic!("{key} missing or out of order in {json}");
        };
        rest = &rest[at + needle.len()..];
    }
    rest
}

const LINE_KEYS: [&str; 20] = [
    "method",
    "url",
    "policy",
    "outcome",
    "status",
    "error_kind",
    "transient",
    "retry_after_ms",
    "total_ms",
    "body_bytes",
    "message",
    "give_up",
    "sent",
    "server_quota_remaining",
    "server_quota_reset_ms",
    "criticality",
    "adaptive_limit",
    "adaptive_in_flight",
    "throttle_probability",
    "attempts",
];

const ATTEMPT_KEYS: [&str; 8] = [
    "n",
    "status",
    "error_kind",
    "sent",
    "delay_before_ms",
    "elapsed_ms",
    "hedge",
    "cancelled",
];

/// Issue 24 item 9: every line has every key, in the order `cli::probe::Line` documents (a
/// first-try success too: it once dropped `hedge` and `cancelled`), and says why the call
/// stopped in `give_up`.
#[tokio::test]
async fn every_line_has_every_key_in_one_order_and_says_why_the_call_stopped() {
    let server = FaultServer::start().await.unwrap();
    server.script("/down", [Reply::status(503)]);
    server.script("/pay", [Reply::status(503)]);
    let config = policy_file("[default.backoff]\nbase = \"1ms\"\nmax = \"5ms\"\n");
    let config = config.as_str();
    for (args, give_up) in [
        (vec![server.url("/a")], Value::Null),
        (vec![server.url("/down")], "attempts_exhausted".into()),
        (
            vec!["-X".into(), "POST".into(), server.url("/pay")],
            "non_idempotent".into(),
        ),
    ] {
        let mut all = vec!["--config".to_owned(), config.to_owned()];
        all.extend(args);
        let output = probe(&all).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let json = stdout.trim_end();
        let r: Value = serde_json::from_str(json).unwrap();
        let object = r.as_object().unwrap();
        assert_eq!(object.len(), LINE_KEYS.len(), "{json}");
        // The quota is followed by default; this server advertises none.
        assert_eq!(r["server_quota_remaining"], Value::Null, "{json}");
        assert_eq!(r["server_quota_reset_ms"], Value::Null, "{json}");
        // Neither adaptive concurrency nor throttling is on by default.
        assert_eq!(r["criticality"], "default", "{json}");
        assert_eq!(r["adaptive_limit"], Value::Null, "{json}");
        assert_eq!(r["adaptive_in_flight"], Value::Null, "{json}");
        assert_eq!(r["throttle_probability"], Value::Null, "{json}");
        let mut attempts = assert_keys_in_order(json, &LINE_KEYS);
        for attempt in r["attempts"].as_array().unwrap() {
            assert_eq!(
                attempt.as_object().unwrap().len(),
                ATTEMPT_KEYS.len(),
                "{json}"
            );
            attempts = assert_keys_in_order(attempts, &ATTEMPT_KEYS);
        }
        assert_eq!(r["give_up"], give_up, "{json}");
        assert_eq!(
            r["sent"], true,
            "every one of these reached the server: {json}"
        );
        assert_eq!(r["attempts"][0]["hedge"], false, "{json}");
        assert_eq!(r["attempts"][0]["cancelled"], false, "{json}");
    }
    assert_eq!((server.hits("/down"), server.hits("/pay")), (3, 1));
}

/// Issue 26: the adaptive limit, the throttle's probability and the policy's criticality on
/// every line; against a dependency that rejects everything, with K = 1, later requests are
/// throttled locally: `throttled`, never sent, the probability in the message.
#[tokio::test]
async fn lines_show_the_adaptive_limit_the_throttle_and_the_criticality() {
    let server = FaultServer::start().await.unwrap();
    server.script("/down", [Reply::status(503)]);
    let config = policy_file(
        "[default]\nmax_attempts = 1\ncriticality = \"sheddable\"\n\
         [default.adaptive_concurrency]\nalgorithm = \"aimd\"\ninitial = 4\nmin = 2\nmax = 8\n\
         [default.throttle]\nk = 1.0\n",
    );
    let output = probe(&[
        "--config",
        config.as_str(),
        "--repeat",
        "40",
        &server.url("/down"),
    ])
    .await;
    let records = lines(&output);
    assert_eq!(records.len(), 40);
    let mut throttled = 0;
    for r in &records {
        assert_eq!(r["criticality"], "sheddable", "{r}");
        let limit = r["adaptive_limit"].as_u64().unwrap();
        assert!((2..=8).contains(&limit), "{r}");
        assert_eq!(r["adaptive_in_flight"], 0, "{r}");
        let probability = r["throttle_probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&probability), "{r}");
        if r["error_kind"] == "throttled" {
            throttled += 1;
            assert_eq!(r["sent"], false, "{r}");
            assert_eq!(r["transient"], true, "{r}");
            assert_eq!(r["give_up"], "throttled", "{r}");
            assert!(r["message"].as_str().unwrap().contains('%'), "{r}");
        } else {
            assert_eq!(r["status"], 503, "{r}");
        }
    }
    // Everything is rejected: the probability climbs towards 1, most are throttled.
    assert!(throttled >= 10, "{throttled} of 40 throttled");
    assert_eq!(server.hits("/down"), 40 - throttled);
    let last = records[39]["throttle_probability"].as_f64().unwrap();
    assert!(last > 0.5, "{last}");
}

/// `--criticality` is the requests' own, over the policy's: every line shows it, and the
/// throttle reads it (a throttled line's message names it).
#[tokio::test]
async fn criticality_sets_the_requests_own() {
    let server = FaultServer::start().await.unwrap();
    server.script("/down", [Reply::status(503)]);
    let config = policy_file(
        "[default]\nmax_attempts = 1\ncriticality = \"sheddable\"\n[default.throttle]\nk = 1.0\n",
    );
    let output = probe(&[
        "--config",
        config.as_str(),
        "--criticality",
        "critical",
        "--repeat",
        "30",
        &server.url("/down"),
    ])
    .await;
    let records = lines(&output);
    assert_eq!(records.len(), 30);
    let mut throttled = 0;
    for r in &records {
        assert_eq!(r["criticality"], "critical", "{r}");
        if r["error_kind"] == "throttled" {
            throttled += 1;
            assert!(r["message"].as_str().unwrap().contains("critical"), "{r}");
        }
    }
    // Critical attempts are throttled at most 3 in 4: some always reach the server.
    assert!(server.hits("/down") > 0, "{throttled} of 30 throttled");
}

/// An HTTPS server for `127.0.0.1` with a certificate of the test CA: answers `200 hi` to
/// every request, one per connection.
async fn https_server() -> String {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let cert = include_bytes!("data/h2-test-server.der");
    let key = include_bytes!("data/h2-test-server.key.der");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(&cert[..])],
            rustls::pki_types::PrivatePkcs8KeyDer::from(&key[..]).into(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi";
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://{addr}/")
}

/// Issue 24 item 9: `--cacert FILE` trusts a private CA, as curl's does; without it the
/// server's certificate is refused; a file that is no CA is bad input (exit 2).
#[tokio::test]
async fn cacert_trusts_a_private_ca() {
    const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/h2-test-ca.pem");
    let url = https_server().await;
    let run = |args: Vec<&str>| {
        let mut command = probe_command();
        command
            .args(args)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("RUST_LOG");
        async move { command.output().await.unwrap() }
    };
    let output = run(vec![&url]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(lines(&output)[0]["outcome"], "error", "{output:?}");

    let output = run(vec!["--cacert", TEST_CA, &url]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let r = &lines(&output)[0];
    assert_eq!(
        (&r["status"], &r["body_bytes"]),
        (&200.into(), &2.into()),
        "{r}"
    );

    let not_a_ca = policy_file("[default]\n");
    for file in [not_a_ca.as_str(), "/nonexistent/s3cr3t.pem"] {
        let output = run(vec!["--cacert", file, &url]).await;
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        assert!(output.stdout.is_empty(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--cacert"), "{stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
}

/// The `probe` example is the same probe: the same usage, the same lines. (Only the usage
/// line is compared: an example built by an earlier `cargo test` may be older than the
/// binary, whose help this test would otherwise pin.)
#[tokio::test]
async fn the_example_runs_the_same_probe() {
    let server = FaultServer::start().await.unwrap();
    let example = |args: Vec<String>| {
        let mut command = tokio::process::Command::new(example_binary());
        command.args(args).env_remove("RUST_LOG");
        async move { command.output().await.unwrap() }
    };
    let first_line = |output: Output| {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        stdout.lines().next().map(str::to_owned)
    };
    let usage = first_line(example(vec!["--help".into()]).await);
    assert_eq!(usage, first_line(probe(&["--help"]).await));
    assert!(usage.unwrap().starts_with("usage: resilient-http probe "));
    let output = example(vec![server.url("/a")]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(lines(&output)[0]["body_bytes"], 2);
}
