//! The `probe` example, run as a user runs it, against the fault server: its flags, its JSON
//! lines and its exit codes are a public contract.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use resilient_http::testkit::{FaultServer, Reply};
use serde_json::Value;

/// The example binary, which `cargo test` builds with the tests (built here if it did not).
fn probe_binary() -> PathBuf {
    let dir = std::env::current_exe().unwrap();
    let debug = dir.parent().unwrap().parent().unwrap();
    let binary = debug.join("examples").join("probe");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "probe"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    binary
}

async fn probe(args: &[impl AsRef<OsStr>]) -> Output {
    probe_logging(args, None).await
}

/// The probe with `RUST_LOG` set to `filter` (unset for `None`).
async fn probe_logging(args: &[impl AsRef<OsStr>], filter: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(probe_binary());
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
    let config = policy_file("[default]\nattempt_timeout = \"300ms\"\nattempts = 1\n");
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
        "[[endpoint]]\nname = \"payments\"\nmatch = {{ host = \"{}\", path = \"/charge\" }}\nattempts = 1\n",
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
        assert!(stdout.starts_with("usage: probe "), "{stdout}");
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
    let mut child = tokio::process::Command::new(probe_binary())
        .args(["--repeat", "2000", &server.url("/a")])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0; 10];
    tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first)
        .await
        .unwrap();
    assert_eq!(&first, b"{\"attempts");
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
