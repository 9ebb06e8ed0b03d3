//! The `probe` example, run as a user runs it, against the fault server: its flags, its JSON
//! lines and its exit codes are a public contract.

use std::path::PathBuf;
use std::process::Output;

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

async fn probe(args: &[&str]) -> Output {
    probe_logging(args, None).await
}

/// The probe with `RUST_LOG` set to `filter` (unset for `None`).
async fn probe_logging(args: &[&str], filter: Option<&str>) -> Output {
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
