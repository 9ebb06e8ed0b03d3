//! What the library logs. Its own test binary: tracing caches per call site whether anyone
//! listens, and a test thread without a subscriber that reaches a call site first (in a shared
//! binary, any other test) would make this one miss events.

use std::time::Duration;

use resilient_http::Client;
use resilient_http::retry::{Jitter, RetryPolicy};
use resilient_http::testkit::{FaultServer, Reply};

fn client() -> Client {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    Client::builder()
        .retry(policy)
        .total_deadline(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Captures everything logged at DEBUG and above while `f` runs on this thread.
async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let output = f.await;
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (output, text)
}

#[tokio::test(start_paused = true)]
async fn retries_and_skipped_retries_are_visible_in_tracing() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/s",
        [Reply::status(503), Reply::status(503), Reply::ok("ok")],
    );
    server.script("/pay", [Reply::status(503)]);
    let client = client();
    let (result, log) = logged(client.get(server.url("/s")).send()).await;
    result.unwrap();
    assert_eq!(log.matches("retry scheduled").count(), 2, "{log}");
    assert!(
        log.contains("delay_ms=100") && log.contains("delay_ms=200"),
        "{log}"
    );

    let (result, log) = logged(client.post(server.url("/pay")).bearer_auth("s3cr3t").send()).await;
    result.unwrap_err();
    assert!(log.contains("retry skipped"), "{log}");
    assert!(log.contains("reason=\"non_idempotent\""), "{log}");
    assert!(!log.contains("s3cr3t"), "{log}");
}
